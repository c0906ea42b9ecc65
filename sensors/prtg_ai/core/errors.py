"""The pack's error tiers (see design.md, "Error tiers").

* ``ConfigError``: a bad parameter; the PRTG error names the parameter.
* ``SensorError``: the whole sensor cannot measure (driver missing, path gone,
  access denied); the PRTG error carries a hint saying what to check.
* Anything else is a bug, caught by the guarded runtime and logged with its traceback.
"""


class PrtgAiError(Exception):
    """Base of the errors the runtime turns into clean PRTG error results."""

    def message(self) -> str:
        return str(self)


class ConfigError(PrtgAiError):
    """A parameter is missing, malformed or out of range."""

    def __init__(self, param: str | None, problem: str):
        super().__init__(problem)
        self.param = param
        self.problem = problem

    def message(self) -> str:
        if self.param:
            return f"Parameter --{self.param.replace('_', '-')}: {self.problem}"
        return self.problem


class SensorError(PrtgAiError):
    """The sensor cannot produce channels; ``hint`` says what the operator should check."""

    def __init__(self, problem: str, hint: str = ""):
        super().__init__(problem)
        self.problem = problem
        self.hint = hint

    def message(self) -> str:
        return f"{self.problem} {self.hint}".strip() if self.hint else self.problem

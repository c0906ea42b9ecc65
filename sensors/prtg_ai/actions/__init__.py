"""Actions: commands that change the world on purpose (``prtg-ai act <action>``), never sensors.

Every action is a dry run unless ``--execute`` is given, decides from live evidence
(never from the text of the PRTG notification that started it), and writes every
decision to an audit log in the state folder before it reports.

* ``stop-idle-gpus`` (``stop_idle_gpus.py``): stop opted-in GPU instances that have
  been idle for a while; pure rules in ``idle_policy.py``, audit log in ``audit.py``.
"""

"""The agent: ``prtg-ai serve`` (HTTP Data Advanced, pull) and ``prtg-ai push`` (HTTP Push Data Advanced).

* ``app``: the WSGI application (routing, authentication, parameter validation).
* ``auth``: token / basic-auth checks in constant time, client address filtering,
  and the rule that a non-loopback listener needs an authentication method.
* ``cache``: the short-TTL, single-flight result cache (identical requests within a few
  seconds share one sensor run).
* ``server``: runs the app under waitress with production limits and a graceful stop.
* ``push``: runs sensors on a schedule and POSTs their results to a PRTG probe.

Nothing here is imported by ``prtg-ai run``: script sensors never pay for the agent.
"""

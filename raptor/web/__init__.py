"""``raptor web``: the live fleet dashboard (the ``web`` extra).

- :mod:`raptor.web.server`: the command (arguments, auth decision, uvicorn).
- :mod:`raptor.web.auth`: pure: who may read (loopback, token, ``--no-auth``).
- :mod:`raptor.web.app`: the Starlette application: pages, JSON API, event streams.
- :mod:`raptor.web.hub`: one reader of the history stream shared by every page.
- ``static/``: the page, its script and style: shipped in the wheel, nothing fetched
  from elsewhere at run time.
"""

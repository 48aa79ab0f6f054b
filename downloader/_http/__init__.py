"""HTTP: the only importer of aiohttp's client.

- ``session.py``  the one ``ClientSession`` of a run; proxies and .netrc read once
- ``stream.py``   one GET: redirects followed by us, every hop asking
                  ``policy.headers_for``; ``Stream`` (its ``Answer`` and body)
- ``errors.py``   every aiohttp exception mapped to ours (``translated``)
- ``tls.py``      TLS contexts, built beside the start-up (``fast start``)

Nothing is imported here: ``tls.py`` must load before aiohttp does (the CLI's
fast start), so callers import the module they need (``_http.stream``).
"""

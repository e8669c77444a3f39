"""The serving side: the Flask application and everything between a request and the snapshot.

``app`` builds the application (``create_app``); ``resources`` are the data endpoints; ``hal`` and
``html`` turn snapshots into documents and pages; ``responses`` renders them once per snapshot with
HTTP caching; ``replay`` answers repeated requests without Flask, trusting ``tokens`` verified
before; ``health``, ``metrics`` and ``throttle`` serve operations. Nothing here imports ``requests``,
ldap3 or ``crawl``: the authenticator and the snapshots come in through ``create_app``.
"""

"""The registry side: reading a registry into a ``Listing``.

``base`` is the contract; ``client`` speaks the registry's HTTP API and GitLab's token endpoint;
``manifests`` parses what the registry answers; ``builtin`` and ``library`` are the two crawlers;
``process`` runs either in a child process of its own. Nothing here imports Flask, ldap3 or ``web``.
"""

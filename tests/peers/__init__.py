"""Real peers for integration tests: an AD-shaped OpenLDAP slapd (``slapd``, ``ad_tree``, ``fixtures``)."""

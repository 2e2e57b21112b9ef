"""The network worker: the scrape scheduler (:mod:`worker.scrape`) and SSH config backups (``worker.backup``).

``sotp worker`` (:mod:`worker.cli`) runs both in one process; see docs/worker.md.
"""

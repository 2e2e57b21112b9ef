"""Pieces of the PostgreSQL backend (:mod:`sotp.storage.postgres` assembles them).

``options`` parses the storage URL, ``binary`` builds binary COPY buffers and decodes binary arrays with
numpy, ``schema`` holds the versioned migrations and the partition (or TimescaleDB) management,
``series`` resolves label sets to series ids, ``postings`` is the querier's in-memory label index,
``query`` implements the querier.
"""

"""``sotp snmp generate``: snmp_exporter's generator, reading the same ``generator.yml``.

``config`` reads the generator format (``auths``, and per module ``walk``, ``lookups``,
``overrides``, ``filters`` and the walk parameters, inline or under ``walk_params``); ``generate``
turns MIB objects into ``snmp.yml`` modules with the rules of snmp_exporter's ``generator/tree.go``;
``output`` writes the file in the current snmp_exporter format (``auths`` + ``modules``).
"""

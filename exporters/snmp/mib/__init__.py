"""MIB files -> an OID tree with net-snmp's view of every object.

``loader`` parses MIB modules with pysmi's SMI parser (the maintained parser of the pysnmp family) and
resolves them the way net-snmp's ``parse.c`` does, because snmp_exporter's generator reads net-snmp's
tree: the same object types, display hints, textual conventions, enumerations and indexes give the
same generated modules. ``tree`` holds the resulting :class:`Node` tree, its name index and the
generator's preparation pass (snmp_exporter's ``prepareTree``).
"""

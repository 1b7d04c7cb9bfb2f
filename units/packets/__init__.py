"""Alert packets: the bytes surveys send, decoded into records and written back.

Sources (:mod:`units.sources`) read files and archives and hand each blob of bytes to
this package; the simulator (``runners.simulate``) writes packets with it. Import from
the modules, each of which lists its public names in ``__all__``:

* :mod:`~units.packets.decode`: :func:`~units.packets.decode.decode` turns a blob (an
  Avro container file or a run of Confluent-framed packets) into records, or into
  :class:`~units.alerts.Unreadable` packets naming what is wrong;
* :mod:`~units.packets.identify`: which survey, stock and alert a decoded record is;
* :mod:`~units.packets.containers`: the Avro object container format: headers read and
  written, single-record packets, container files;
* :mod:`~units.packets.confluent`: the Confluent wire format and the official Rubin
  schemas it refers to (``schemas/``);
* :mod:`~units.packets.binary`: Avro's binary encoding of longs and bytes;
* :mod:`~units.packets.splice`: encoded records as byte templates, re-encoding only the
  fields that change (how the simulator makes copies of alerts quickly).
"""

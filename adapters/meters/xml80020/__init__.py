"""XML 80020 (and 80040) files from head-end systems and business customers with hourly metering:
the interval energy of each measuring channel, mapped to a meter and zone of the registry and kept
as interval data (table `meter_intervals`), with a report per file.

- `message.py`: the file's format (the АТС regulation's layout 80020), parsed without trusting it;
- `config.py`: `[xml80020]`, the channels' mapping and the watched folder;
- `importing.py`: one file into the store, its report; `tables.py`: the files imported;
- `watch.py`: the watched folder inside `meter-gateway run`; `commands.py`: `import 80020 FILE`.
"""

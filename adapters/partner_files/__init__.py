"""Partners' files of readings: layouts as data, readers of CSV, XLSX and DBF, the import through
the one intake and the result file in the partner's layout; the `[files]` section.

Not a door of its own: the doors that take files use it (adapters/partners/: the API, the drop
folder and the command line; adapters/web/: the upload on the operators' desk), as the device
item format is shared in adapters/device_items/.
"""

"""The catalogue file: one JSON format for import, export and the demo data.

The format is described in ``docs/catalogue-format.md``. Entry points:

- ``catalogue.catalogue_io.importer.catalogue_import`` (validate a whole document, then write
  it in one transaction),
- ``catalogue.catalogue_io.exporter.catalogue_export`` (the same format out of the database),
- ``catalogue.catalogue_io.jsonio`` (Decimal-exact parsing and deterministic output).

This package module imports nothing from Django so that ``jsonio`` can be used by the demo
generator script without setting Django up.
"""

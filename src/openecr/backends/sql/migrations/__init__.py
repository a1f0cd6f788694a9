"""Alembic's script directory for the SQL metadata store: ``env.py`` and ``versions/``.

Run through :func:`openecr.backends.sql.migrate.upgrade` (``openecr db upgrade``, and every
``SqlMetadataStore`` on opening), never through the ``alembic`` command: there is no alembic.ini.
"""

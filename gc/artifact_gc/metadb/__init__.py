"""The metadata database: the engine, the store's identity, and the Dialect (SQLite,
MySQL/MariaDB) that holds everything that differs between databases."""

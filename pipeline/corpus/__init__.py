"""The corpus: its schema and database, migrations, search index, tag storage, crawl runs and
source health, config sync, retag and corrections. Everything that reads or writes rows lives here."""

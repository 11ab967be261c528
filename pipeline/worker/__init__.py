"""Where a crawl's ingest runs: the Scrapy shell (`shell`), the `runner.Runner` interface with its
two implementations (`runner.InProcessRunner`, and `client.WorkerClient` for the pipeline worker
process whose other end is `server`), the messages between the two processes (`protocol`) and the
split of optional work between them (`split`)."""

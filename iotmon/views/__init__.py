"""What a person or a scraper sees: console, progress lines, metrics, status."""

"""Read-only views: explain, check, status."""

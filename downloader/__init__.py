"""Resumable, streaming, manifest-driven bulk file downloader."""

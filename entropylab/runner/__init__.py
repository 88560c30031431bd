"""Run directories, metrics, progress, orbax checkpoint/resume, device mesh."""

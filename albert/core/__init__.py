"""Plumbing every part of the suite shares: errors, atomic files, bounds, precisions, progress, streams, signals."""

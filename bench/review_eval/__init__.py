"""The review evaluation set: real git repositories with planted bugs and clean refactors."""

"""The forms a review is written in: terminal, Markdown, SARIF 2.1.0, a GitHub review, JSON."""

"""A sibling of src/entry.py, imported as Cloudflare's Python Workers import them."""


def shout(text: str) -> str:
    return text.upper() + "!"

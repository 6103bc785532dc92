"""Reading a corpus's files: formats, decoding, caps on untrusted input, the raw manifest."""

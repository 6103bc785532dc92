"""The language models (GPT, GRU) and sampling from them."""

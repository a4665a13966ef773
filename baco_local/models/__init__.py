"""Model files: GGUF headers, tokenizer compatibility, memory needs and file identity."""

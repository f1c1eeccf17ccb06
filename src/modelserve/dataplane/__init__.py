"""The data plane: request decoding, model calls and response encoding, framework-free."""

"""Generation engines behind one interface: Hugging Face transformers (any machine) and vLLM (GPU)."""

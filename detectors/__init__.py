"""Every non-VLM model behind one small interface: batched `predict(frames) -> votes`."""

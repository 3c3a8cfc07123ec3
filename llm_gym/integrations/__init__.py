"""Bridges to other libraries' training loops (imported on demand; nothing in llm_gym imports them)."""

"""Attribution methods: input gradients and class activation maps (METHODS.md sections 1, 3)."""

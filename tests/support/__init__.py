"""Helpers of the test suite (not tests): tree comparison, the gradient check, and the
subprocess workers of the kill/resume and multi-device tests."""

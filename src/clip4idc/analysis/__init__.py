"""Error analysis of decoded captions: what a caption says changed, to which object.

Pure text processing over caption strings; nothing here imports torch, so the analysis can run
(and be tested) without the model stack.
"""

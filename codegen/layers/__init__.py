"""House building blocks shared by the references and the packages generated from them.

Only pieces whose maths is identical across models live here (RMSNorm, the RoPE family, the
routed experts); everything architecture-specific stays in the model package, where a reader
expects it. A generated package gets a copy of each module it uses (`scaffold/standalone.py`),
so their docstrings speak to that package's reader. A transform that changes the experts'
maths for one target (a clamp, biases, a fused gate/up weight) copies `Experts` into the
package's model.py as plain SwiGLU and edits that copy, so the shared class stays plain.
"""

"""The FINN-style dataflow backend: hardware layers with FINN's analytic costs (`layers`) and the
folding search (`folding`). Torch-free."""

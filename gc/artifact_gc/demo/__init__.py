"""gc demo: a realistic sample store (demo.synthetic) and the whole cycle run on it.

Nothing in the phases imports this package: the generator is for the demo, the tests
and the benchmarks."""

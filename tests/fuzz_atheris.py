"""Coverage-guided fuzzing of the Python API with atheris (libFuzzer): each input's bytes drive
tests/fuzzing.random_call. Any exception other than TypeError/ValueError/MemoryError, or a
crash, is a finding. Run: python tests/fuzz_atheris.py -runs=100000 (tests/test_fuzz.py runs a
short session)."""
import sys

import atheris

with atheris.instrument_imports(include=["gengrad", "fuzzing"]):
    from fuzzing import ALLOWED, outcome, random_call


class BytesSource:
    def __init__(self, data: bytes):
        self.provider = atheris.FuzzedDataProvider(data)

    def integer(self, lo: int, hi: int) -> int:
        return self.provider.ConsumeIntInRange(lo, hi)

    def real(self) -> float:
        return self.provider.ConsumeRegularFloat() % 8.0 - 4.0


def one_input(data: bytes) -> None:
    try:
        call = random_call(BytesSource(data))
    except ALLOWED:
        return
    outcome(call)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()

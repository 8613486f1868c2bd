"""Table 1 of the Acoustic Lottery report (DCASE 2021 Task 1a), as published.

Reference values only: they are printed beside our measurements, never used as results.
Sizes are in KB (1 KB = 1024 bytes) by the DCASE 2021 rule; 132 MB and 332 MB are the
report's figures for the two-stage teachers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PaperRow:
    index: int
    system: str
    tsl: bool
    lth: bool
    two_stage: bool
    mtl: bool
    quant: bool
    aug: bool
    size_kb: float
    size_text: str
    accuracy: float | None
    log_loss: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _row(i, system, flags, size_kb, size_text, acc, ll) -> PaperRow:
    tsl, lth, two, mtl, quant, aug = (c == "Y" for c in flags)
    return PaperRow(i, system, tsl, lth, two, mtl, quant, aug, size_kb, size_text, acc, ll)


# flags: TSL LTH Two-stage MTL Quant Aug
TABLE1: dict[int, PaperRow] = {
    r.index: r
    for r in [
        _row(0, "Official Baseline", "------", 90.3, "90.3KB", 47.7, 1.473),
        _row(1, "Two-stage FCNN", "--Y--Y", 132 * 1024.0, "132MB", 77.6, 0.795),
        _row(2, "Two-stage ensemble", "--Y--Y", 332 * 1024.0, "332MB", 81.9, 0.829),
        _row(3, "SIC", "------", 503.0, "503KB", 67.8, 0.954),
        _row(4, "SIC", "Y-----", 503.0, "503KB", 68.9, 0.919),
        _row(5, "SIC", "-Y----", 3.4, "3.4KB", 68.2, 0.914),
        _row(6, "SIC", "--Y---", 1006.0, "1006KB", 68.9, 0.914),
        _row(7, "SIC", "---Y--", 504.0, "504KB", 68.0, 0.915),
        _row(8, "SIC", "----Y-", 126.0, "126KB", 66.9, 0.972),
        _row(9, "SIC", "Y-Y---", 1006.0, "1006KB", 69.2, 0.874),
        _row(10, "SIC", "Y-Y-Y-", 252.0, "252KB", 68.4, 0.906),
        _row(11, "SIC", "-Y--Y-", 0.9, "0.9KB", 67.7, 0.931),
        _row(12, "LIC", "------", 3528.0, "3528KB", 69.0, 0.891),
        _row(13, "LIC", "Y-----", 3528.0, "3528KB", 69.9, 0.880),
        _row(14, "LIC", "-Y----", 23.6, "23.6KB", 69.2, 0.878),
        _row(15, "LIC", "--Y---", 7056.0, "7056KB", 70.0, 0.848),
        _row(16, "LIC", "YYY---", 47.2, "47.2KB", 70.8, 0.833),
        _row(17, "LIC", "YY---Y", 23.6, "23.6KB", 78.3, 0.721),
        _row(18, "LIC", "YYY--Y", 47.2, "47.2KB", 78.4, 0.654),
        _row(19, "LIC", "YY--YY", 5.9, "5.9KB", 78.2, 0.723),
        _row(20, "Ensemble of LICs", "YYY-YY", 47.2, "47.2KB", 78.7, 0.644),
        _row(21, "Ensemble of LICs", "YYY--Y", 118.0, "118KB", 79.0, 0.637),
        _row(22, "Ensemble of LICs and SICs", "YYY--Y", 122.0, "122KB", 79.4, 0.640),
    ]
}


#: The four submitted systems (report section 3.3): two-stage ensembles of LTH-pruned
#: LICs and SICs. The report gives their sizes only (system (a) is row 22's system).
SYSTEMS: dict[str, PaperRow] = {
    "a": PaperRow(22, "System (a)", True, True, True, False, False, True, 122.0, "122KB",
                  79.4, 0.640),
    "b": PaperRow(-1, "System (b)", True, True, True, False, True, True, 110.0, "110KB",
                  None, None),
    "c": PaperRow(-1, "System (c)", True, True, True, False, True, True, 125.0, "125KB",
                  None, None),
    "d": PaperRow(-1, "System (d)", True, True, True, False, True, True, 122.0, "122KB",
                  None, None),
}  # fmt: skip


def paper_system(letter: str) -> PaperRow:
    """A submitted system as published; a KeyError names the valid letters."""
    try:
        return SYSTEMS[letter]
    except KeyError:
        raise KeyError(f"the report submitted systems a-d, not {letter!r}") from None


def paper_row(index: int) -> PaperRow:
    """The published row; a KeyError names the valid range."""
    try:
        return TABLE1[index]
    except KeyError:
        raise KeyError(f"Table 1 has rows 0-22, not {index}") from None

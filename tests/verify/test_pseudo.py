from pathlib import Path

import pytest

from tcdesign.verify.pseudo import (
    DEBIAN_PSEUDO_DIR,
    PseudopotentialError,
    choose_pseudopotentials,
    normalise_functional,
    read_upf_header,
)


def write_v2(folder: Path, name: str, element: str, functional: str, kind: str, wfc=0.0, rho=0.0):
    paw = 'is_paw="T"' if kind == "PAW" else 'is_paw="F"'
    (folder / name).write_text(
        f'<UPF version="2.0.1">\n<PP_INFO>\n</PP_INFO>\n<PP_HEADER element="{element}" '
        f'pseudo_type="{kind}" {paw} relativistic="scalar" functional="{functional}"\n'
        f'wfc_cutoff="{wfc}" rho_cutoff="{rho}" z_valence="3.0"/>\n</UPF>\n'
    )


def write_v1(folder: Path, name: str, element: str) -> None:
    (folder / name).write_text(
        "<PP_HEADER>\n   0                   Version Number\n"
        f"  {element}                   Element\n   NC                  Norm - Conserving\n"
        " SLA  PZ   NOGX NOGC   PZ   Exchange-Correlation functional\n"
        "    3.00000000000      Z valence\n    20.0    80.0 Suggested cutoff for wfc and rho\n"
        "</PP_HEADER>\n"
    )


def test_headers_v1_and_v2(tmp_path):
    write_v2(tmp_path, "N.pbe.UPF", "N", "SLA PW PBX PBC", "PAW", 44.0, 320.0)
    write_v1(tmp_path, "Mg.lda.UPF", "Mg")
    n = read_upf_header(tmp_path / "N.pbe.UPF")
    assert (n.element, n.functional, n.kind, n.wfc_cutoff_ry) == ("N", "pbe", "PAW", 44.0)
    mg = read_upf_header(tmp_path / "Mg.lda.UPF")
    assert (mg.element, mg.functional, mg.kind, mg.rho_cutoff_ry) == ("Mg", "lda", "NC", 80.0)
    assert normalise_functional("SLA PW PSX PSC") == "pbesol"


def test_preference_order_and_common_functional(tmp_path):
    write_v2(tmp_path, "B.pbe-paw.UPF", "B", "PBE", "PAW")
    write_v2(tmp_path, "B.pbe-nc.UPF", "B", "PBE", "NC")
    write_v2(tmp_path, "B.pz.UPF", "B", "SLA PZ NOGX NOGC", "NC")
    write_v2(tmp_path, "Mg.pbesol.UPF", "Mg", "PBESOL", "US")
    write_v2(tmp_path, "Mg.pbe-us.UPF", "Mg", "PBE", "US")
    chosen = choose_pseudopotentials(["Mg", "B"], tmp_path)
    assert chosen["Mg"].filename == "Mg.pbe-us.UPF"  # PBEsol does not cover B
    assert chosen["B"].filename == "B.pbe-nc.UPF"  # NC before PAW
    explicit = choose_pseudopotentials(["B"], tmp_path, {"B": "B.pz.UPF"})
    assert explicit["B"].functional == "lda"


def test_every_missing_element_is_named_before_anything_runs(tmp_path):
    write_v2(tmp_path, "B.pbe.UPF", "B", "PBE", "NC")
    with pytest.raises(PseudopotentialError, match="Nb, V"):
        choose_pseudopotentials(["Nb", "B", "V"], tmp_path)
    write_v2(tmp_path, "Ti.lda.UPF", "Ti", "PZ", "US")
    with pytest.raises(PseudopotentialError, match="no single functional"):
        choose_pseudopotentials(["Ti", "B"], tmp_path)


@pytest.mark.skipif(not DEBIAN_PSEUDO_DIR.is_dir(), reason="Debian QE pseudopotentials absent")
def test_debian_set_covers_al_and_mgb2():
    assert choose_pseudopotentials(["Al"], DEBIAN_PSEUDO_DIR)["Al"].filename == "Al.pz-vbc.UPF"
    mgb2 = choose_pseudopotentials(["Mg", "B"], DEBIAN_PSEUDO_DIR)
    assert {p.functional for p in mgb2.values()} == {"lda"}


def test_coulomb_semilocal_and_files_without_cutoffs(tmp_path):
    """An all-electron Coulomb H is never picked automatically (it needs hundreds of Ry); a
    semilocal file is norm-conserving; a file that suggests cutoffs beats one that does not."""
    write_v2(tmp_path, "H.coulomb-ae.UPF", "H", "PBE", "1/r")
    write_v2(tmp_path, "H.pbe-paw.UPF", "H", "PBE", "PAW", 45.0, 360.0)
    write_v2(tmp_path, "C.pbe-mt.UPF", "C", "PBE", "NC")  # Troullier-Martins, no cutoff
    write_v2(tmp_path, "C.pbe-us.UPF", "C", "PBE", "US", 40.0, 320.0)
    write_v2(tmp_path, "Fe.pbe-mt_fhi.UPF", "Fe", "PBE", "SL")
    assert read_upf_header(tmp_path / "H.coulomb-ae.UPF").kind == "AE"
    assert read_upf_header(tmp_path / "Fe.pbe-mt_fhi.UPF").kind == "NC"
    chosen = choose_pseudopotentials(["C", "H"], tmp_path)
    assert chosen["H"].filename == "H.pbe-paw.UPF"
    assert chosen["C"].filename == "C.pbe-us.UPF"
    (tmp_path / "H.pbe-paw.UPF").unlink()
    with pytest.raises(PseudopotentialError, match="for H"):
        choose_pseudopotentials(["H"], tmp_path)
    explicit = choose_pseudopotentials(["H"], tmp_path, {"H": "H.coulomb-ae.UPF"})
    assert explicit["H"].kind == "AE"  # still usable when named

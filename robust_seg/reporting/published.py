"""Published numbers of the paper tables this project reproduces, transcribed from the papers in ``seeds/``.

SEA paper = "Towards reliable evaluation and fast training of robust semantic segmentation models"
(Tables 1-4, 7-9); thesis = Chapter 5 (Tables 5.1, 5.2) and Chapter 6 (Table 6.2). Each table maps a row's
labels (as ``robust_seg.reporting.tables`` lays the table out) to the row's values in column order; ``None``
is a cell the paper leaves empty ("–"). All values are percentages (ACC, mIoU, ECE) or ||delta||_inf x 255.
"""
from __future__ import annotations

Row = tuple[float | None, ...]

# Table 1: per model and radius, (Acc, mIoU) of CosPGD, SegPGD, Mask-CE (300 iter. each) and SEA (4 x 300).
TABLE1: dict[tuple[str, str], Row] = {
    ("DDC-AT", "2/255"): (7.1, 3.9, 3.9, 2.2, 0.4, 0.2, 0.3, 0.2),
    ("DDC-AT", "4/255"): (6.5, 3.5, 2.6, 1.6, 0.2, 0.1, 0.0, 0.0),
    ("DDC-AT", "8/255"): (4.5, 3.2, 2.1, 1.3, 0.0, 0.0, 0.0, 0.0),
    ("PIR-AT (ours)", "4/255"): (89.2, 65.6, 89.1, 65.5, 89.0, 65.1, 88.3, 63.8),
    ("PIR-AT (ours)", "8/255"): (78.4, 47.9, 75.3, 41.8, 73.5, 39.9, 71.2, 37.0),
    ("PIR-AT (ours)", "12/255"): (57.1, 27.7, 44.9, 15.7, 31.7, 10.1, 27.4, 8.1),
}

# Table 2: (Acc, mIoU) of APGD (100 iter.) on CE, Bal-CE, CosSim-CE, JS, Mask-CE, Mask-Sph and the worst case.
TABLE2: dict[tuple[str, str], Row] = {
    ("clean", "0.25/255"): (77.3, 48.3, 74.0, 43.7, 76.6, 48.0, 73.9, 44.3, 73.2, 42.7, 75.8, 44.4, 71.1, 39.9),
    ("clean", "0.5/255"): (49.3, 25.1, 42.3, 18.5, 46.9, 24.0, 39.4, 18.3, 36.9, 14.9, 37.5, 14.5, 32.5, 12.1),
    ("clean", "1/255"): (21.2, 9.9, 13.9, 4.8, 17.2, 8.1, 9.1, 4.0, 7.9, 2.2, 6.6, 1.6, 5.3, 1.2),
    ("clean", "2/255"): (7.4, 4.0, 2.9, 1.5, 3.4, 2.3, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.0),
    ("PIR-AT", "4/255"): (88.9, 65.7, 88.7, 64.8, 88.9, 65.4, 88.4, 64.8, 88.9, 65.6, 90.4, 69.7, 88.3, 64.4),
    ("PIR-AT", "8/255"): (78.9, 48.9, 74.2, 41.3, 77.8, 47.3, 75.3, 43.5, 74.6, 41.8, 80.3, 49.6, 72.3, 38.4),
    ("PIR-AT", "12/255"): (59.9, 28.9, 43.3, 14.9, 56.6, 26.4, 45.1, 18.6, 38.8, 13.2, 38.9, 12.1, 31.9, 8.4),
    ("PIR-AT", "16/255"): (41.5, 18.1, 20.7, 5.7, 34.0, 15.3, 19.1, 7.4, 12.9, 3.4, 8.4, 2.0, 6.4, 1.1),
}

# Tables 3 and 4: (Acc, mIoU) under SEA at 0, 4/255, 8/255, 12/255, keyed by the run's row config.
TABLE3: dict[str, Row] = {
    "voc_pspnet_r50_ddcat": (95.1, 75.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "voc_pspnet_r50_at_xu": (94.0, 74.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "voc_pspnet_r50_segpgd_at": (None, 74.5, None, None, None, 17.0, None, None),
    "voc_pspnet_r50_pirat_5step_50ep": (90.6, 68.9, 81.8, 49.0, 51.3, 15.3, 13.4, 2.6),
    "voc_upernet_convnext_t_at_5step_50ep": (91.9, 73.1, 86.2, 59.2, 64.6, 28.3, 20.7, 4.9),
    "voc_upernet_convnext_t_pirat_5step_50ep": (92.7, 75.2, 88.3, 63.8, 71.2, 37.0, 27.4, 8.1),
    "voc_upernet_convnext_s_at_5step_50ep": (92.4, 74.6, 86.8, 63.2, 68.4, 33.8, 24.2, 6.1),
    "voc_upernet_convnext_s_pirat_5step_50ep": (93.1, 76.6, 89.2, 66.2, 70.8, 38.0, 27.0, 8.6),
    "ade_upernet_convnext_t_at_5step_128ep": (68.0, 26.1, 52.4, 14.0, 24.7, 4.7, 2.4, 0.3),
    "ade_upernet_convnext_t_pirat_5step_128ep": (70.5, 31.7, 55.6, 18.6, 26.4, 6.7, 3.3, 0.8),
    "ade_segmenter_vit_s_at_5step_128ep": (67.7, 26.8, 48.4, 12.6, 25.0, 4.7, 4.5, 0.8),
    "ade_segmenter_vit_s_pirat_5step_128ep": (69.1, 28.7, 54.5, 16.1, 32.8, 7.1, 8.6, 1.8),
}
TABLE4: dict[str, Row] = {
    "voc_upernet_convnext_t_at_2step_50ep": (93.4, 77.4, 2.6, 0.1, 0.0, 0.0, 0.0, 0.0),
    "voc_upernet_convnext_t_pirat_2step_50ep": (92.9, 75.9, 86.7, 60.8, 50.2, 21.0, 9.3, 2.4),
    "voc_upernet_convnext_t_at_2step_300ep": (93.1, 76.3, 86.5, 59.6, 44.1, 16.6, 4.6, 0.1),
    "voc_upernet_convnext_t_at_5step_50ep": (91.9, 73.1, 86.2, 59.2, 64.6, 28.3, 20.7, 4.9),
    "voc_upernet_convnext_t_pirat_5step_50ep": (92.7, 75.2, 88.3, 63.8, 71.2, 37.0, 27.4, 8.1),
    "voc_upernet_convnext_t_at_5step_300ep": (92.8, 75.5, 88.6, 64.4, 71.4, 37.7, 23.4, 6.6),
    "ade_upernet_convnext_t_at_2step_128ep": (73.4, 36.4, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0),
    "ade_upernet_convnext_t_pirat_2step_128ep": (72.0, 34.7, 46.0, 15.4, 6.0, 1.8, 0.0, 0.0),
    "ade_upernet_convnext_t_pirat_5step_32ep": (68.8, 25.2, 55.4, 15.6, 28.3, 5.9, 3.8, 0.7),
    "ade_upernet_convnext_t_at_5step_128ep": (68.0, 26.1, 52.4, 14.0, 24.7, 4.7, 2.4, 0.3),
    "ade_upernet_convnext_t_pirat_5step_128ep": (70.5, 31.7, 55.6, 18.6, 26.4, 6.7, 3.3, 0.8),
    "ade_segmenter_vit_s_pirat_5step_32ep": (68.1, 26.0, 55.5, 15.4, 33.2, 6.9, 7.8, 1.4),
    "ade_segmenter_vit_s_at_5step_128ep": (67.7, 26.8, 48.4, 12.6, 25.0, 4.7, 4.5, 0.8),
    "ade_segmenter_vit_s_pirat_5step_128ep": (69.1, 28.7, 54.5, 16.1, 32.8, 7.1, 8.6, 1.8),
}

# Table 7: per radius, (ACC, mIoU) of SegPGD, SegAPGD, CosPGD, CosAPGD (100 iter. each).
TABLE7: dict[str, Row] = {
    "4/255": (88.6, 65.0, 88.7, 64.8, 89.0, 65.5, 88.9, 65.4),
    "8/255": (74.6, 39.4, 74.2, 41.3, 78.2, 47.5, 77.8, 47.3),
    "12/255": (45.8, 15.0, 43.3, 14.9, 58.2, 28.3, 56.2, 26.4),
    "16/255": (26.2, 7.1, 20.7, 5.7, 38.0, 17.2, 34.0, 15.3),
}

# Table 8: per model and loss subset, (Acc, mIoU) at the model's four radii (clean: 0.25/255 .. 2/255 as in
# Table 2, whose worst case these numbers repeat; PIR-AT: 4/255 .. 16/255).
TABLE8: dict[tuple[str, str], Row] = {
    ("clean", "all losses"): (71.1, 39.9, 32.5, 12.1, 5.3, 1.2, 0.1, 0.0),
    ("clean", "four losses"): (71.2, 40.0, 32.6, 12.1, 5.3, 1.2, 0.1, 0.0),
    ("PIR-AT", "all losses"): (88.3, 64.4, 72.3, 38.4, 31.9, 8.4, 6.4, 1.1),
    ("PIR-AT", "four losses"): (88.3, 64.6, 72.3, 38.4, 31.9, 9.0, 6.4, 1.2),
}

# Table 9: per model and radius, ACC of Mask-CE, Bal-CE, JS, Mask-Sph, subsets A, B, C and SEA.
TABLE9: dict[tuple[str, str], Row] = {
    ("voc_upernet_convnext_t_pirat_5step_50ep", "4/255"): (89.0, 88.5, 88.4, 90.5, 88.3, 88.5, 88.4, 88.3),
    ("voc_upernet_convnext_t_pirat_5step_50ep", "8/255"): (73.7, 72.9, 73.8, 80.7, 71.6, 71.7, 71.8, 71.2),
    ("voc_upernet_convnext_t_pirat_5step_50ep", "12/255"): (31.6, 35.9, 38.6, 38.1, 29.4, 27.5, 27.8, 27.4),
    ("voc_upernet_convnext_t_pirat_5step_50ep", "16/255"): (6.7, 11.9, 12.5, 6.8, 5.8, 4.3, 4.3, 4.2),
    ("ade_upernet_convnext_t_pirat_5step_128ep", "4/255"): (57.1, 56.0, 55.9, 63.0, 55.6, 55.9, 55.7, 55.6),
    ("ade_upernet_convnext_t_pirat_5step_128ep", "8/255"): (28.6, 28.6, 28.7, 39.6, 26.5, 27.1, 26.7, 26.4),
    ("ade_upernet_convnext_t_pirat_5step_128ep", "12/255"): (4.2, 4.4, 4.5, 4.3, 3.8, 3.5, 3.5, 3.3),
    ("ade_upernet_convnext_s_pirat_5step_128ep", "4/255"): (58.4, 57.5, 57.5, 63.7, 57.2, 57.5, 57.4, 57.2),
    ("ade_upernet_convnext_s_pirat_5step_128ep", "8/255"): (31.2, 30.9, 31.0, 41.0, 29.0, 29.4, 29.2, 28.8),
    ("ade_upernet_convnext_s_pirat_5step_128ep", "12/255"): (4.7, 6.3, 6.3, 8.0, 4.3, 4.1, 4.0, 3.9),
    ("ade_segmenter_vit_s_pirat_5step_128ep", "4/255"): (56.1, 54.9, 54.9, 60.7, 54.5, 54.8, 54.7, 54.5),
    ("ade_segmenter_vit_s_pirat_5step_128ep", "8/255"): (35.8, 34.1, 34.2, 45.8, 32.9, 33.7, 33.2, 32.6),
    ("ade_segmenter_vit_s_pirat_5step_128ep", "12/255"): (10.4, 10.9, 11.2, 17.5, 8.2, 8.8, 9.1, 7.6),
}

# Thesis Table 5.1: per scenario and attack, (median, mean) ||delta||_inf x 255 on VOC DeepLabV3+ R50,
# VOC FCN HRNetV2 W48, Cityscapes DeepLabV3+ R50, Cityscapes SegFormer MiT-B3.
THESIS_TABLE5_1: dict[tuple[str, str], Row] = {
    ("untargeted", "ifgsm_13x20"): (146.32, 136.55, 227.11, 145.69, 255.00, 242.15, 255.00, 208.97),
    ("untargeted", "mifgsm_13x20"): (195.35, 145.96, 255.00, 157.63, 255.00, 244.43, 255.00, 228.43),
    ("untargeted", "pgd_ce_13x40"): (80.10, 120.93, 152.08, 136.05, 255.00, 236.77, 255.00, 188.15),
    ("untargeted", "pgd_ce_13x4x10"): (24.90, 74.15, 66.93, 118.76, 255.00, 244.92, 255.00, 231.51),
    ("untargeted", "pgd_dlr_13x40"): (7.22, 26.42, 11.11, 23.85, 17.75, 24.23, 84.22, 102.80),
    ("untargeted", "pgd_dlr_13x4x10"): (4.42, 24.99, 10.46, 29.75, 255.00, 227.89, 110.82, 134.41),
    ("untargeted", "dag_0003"): (5.69, 6.63, 8.80, 10.61, 6.30, 7.51, 8.83, 9.02),
    ("untargeted", "dag_0001"): (5.23, 8.22, 8.49, 14.61, 5.95, 9.39, 8.59, 53.65),
    ("untargeted", "fmn"): (0.46, 38.34, 0.91, 46.39, 1.97, 96.57, 1.08, 6.42),
    ("untargeted", "pdpgd"): (0.73, 1.77, 1.52, 2.43, 1.06, 2.82, 1.39, 3.05),
    ("untargeted", "alma_prox"): (0.32, 0.34, 0.51, 0.56, 0.24, 0.26, 0.33, 0.33),
    ("targeted", "ifgsm_13x20"): (0.47, 0.50, 0.59, 0.64, 255.00, 255.00, 51.73, 88.24),
    ("targeted", "mifgsm_13x20"): (0.59, 0.66, 0.77, 0.85, 4.26, 55.35, 2.54, 2.60),
    ("targeted", "pgd_ce_13x40"): (0.37, 0.43, 0.50, 0.54, 3.49, 3.71, 1.87, 1.92),
    ("targeted", "pgd_ce_13x4x10"): (0.50, 0.51, 0.62, 0.65, 255.00, 255.00, 255.00, 255.00),
    ("targeted", "pgd_dlr_13x40"): (0.62, 0.68, 0.81, 0.94, 8.37, 67.86, 3.98, 4.09),
    ("targeted", "pgd_dlr_13x4x10"): (0.87, 1.07, 1.12, 1.28, 255.00, 255.00, 255.00, 255.00),
    ("targeted", "dag_0003"): (4.21, 4.50, 5.32, 5.66, 11.34, 12.96, 9.82, 10.06),
    ("targeted", "dag_0001"): (3.92, 4.21, 5.07, 5.36, 10.96, 40.28, 11.53, 119.47),
    ("targeted", "fmn"): (0.42, 0.45, 0.47, 0.49, 255.00, 254.36, 255.00, 255.00),
    ("targeted", "pdpgd"): (0.28, 0.36, 0.35, 0.46, 14.51, 14.41, 19.26, 19.20),
    ("targeted", "alma_prox"): (0.25, 0.26, 0.32, 0.34, 1.15, 1.17, 0.65, 0.66),
}

# Thesis Table 5.2: (median, mean) ||delta||_inf x 255 on DeepLabV3 DDC-AT, Pascal VOC 2012 and Cityscapes.
THESIS_TABLE5_2: dict[tuple[str, str], Row] = {
    ("untargeted", "dag_0003"): (12.05, 25.96, 16.99, 25.81),
    ("untargeted", "dag_0001"): (11.71, 57.93, 17.02, 81.30),
    ("untargeted", "fmn"): (1.28, 75.66, 37.54, 128.67),
    ("untargeted", "pdpgd"): (3.53, 11.86, 43.61, 58.10),
    ("untargeted", "alma_prox"): (0.78, 2.17, 0.81, 1.01),
    ("targeted", "dag_0003"): (7.01, 7.68, 31.60, 69.84),
    ("targeted", "dag_0001"): (6.78, 8.78, 255.00, 230.29),
    ("targeted", "fmn"): (1.31, 36.10, 255.00, 255.00),
    ("targeted", "pdpgd"): (0.84, 1.23, 255.00, 255.00),
    ("targeted", "alma_prox"): (0.52, 0.54, 3.64, 3.92),
}

# Thesis Table 6.2: ECE and mIoU per training loss (CE, ECP, LS, FL, MbLS, CALS).
THESIS_TABLE6_2: dict[str, Row] = {
    "ECE": (14.75, 5.15, 6.90, 10.87, 5.22, 4.66),
    "mIoU": (66.46, 65.57, 67.73, 64.25, 65.29, 66.77),
}

SEA_TABLE_RADII = ("0", "4/255", "8/255", "12/255")
"""The radii of Tables 3 and 4, in their column order."""


def paper_numbers(reference: str | None) -> dict | None:
    """The published numbers a zoo entry's ``paper`` reference names (``configs/model/zoo/*.yaml``), as the
    ``paper`` entry of ``results.json``; None for no reference. References:

    * ``sea_table3/<row>``, ``sea_table4/<row>``: ACC and mIoU under SEA at 0, 4/255, 8/255, 12/255;
    * ``sea_table9/<row>``: SEA's ACC at the row's radii (Table 9 reports ACC only);
    * ``thesis_table5_1/<column 0-3>``: (median, mean) ||delta||_inf x 255 of each attack, per scenario.
    """
    if not reference:
        return None
    table, _, row = reference.partition("/")
    if table in ("sea_table3", "sea_table4"):
        values = {"sea_table3": TABLE3, "sea_table4": TABLE4}[table].get(row)
        if values is None:
            raise KeyError(f"no row {row!r} in {table}")
        return {"source": f"SEA paper Table {table[-1]} ({row})",
                "radii": {radius: {"acc": values[2 * i], "miou": values[2 * i + 1]}
                          for i, radius in enumerate(SEA_TABLE_RADII)}}
    if table == "sea_table9":
        radii = {radius: {"acc": values[-1], "miou": None} for (name, radius), values in TABLE9.items() if name == row}
        if not radii:
            raise KeyError(f"no row {row!r} in {table}")
        return {"source": f"SEA paper Table 9 ({row}; ACC only)", "radii": radii}
    if table == "thesis_table5_1":
        column = int(row)
        norms: dict[str, dict[str, list[float]]] = {}
        for (scenario, attack), values in THESIS_TABLE5_1.items():
            norms.setdefault(scenario, {})[attack] = [values[2 * column], values[2 * column + 1]]
        return {"source": f"thesis Table 5.1 (column {column + 1})", "minimal_norm": norms}
    raise KeyError(f"unknown paper table {table!r} (choose from sea_table3, sea_table4, sea_table9, thesis_table5_1)")

"""Numbers reported in the AVGN paper (CVPR 2023), for side-by-side display only.

They were measured on MUSIC / VGGSound with ImageNet-initialized ResNet18s at 224 px; our embedded
benchmark is a different dataset at CPU sizes, so they are context, never a target and never
compared as if equal. Values in percent. Source: ``avgn_cvpr2023_main.txt`` Tables 1-3 and the
supplement's Table 1.
"""
from __future__ import annotations

# Table 1 (single source): AVGN and EZ-VSL rows.
TABLE1 = {
    "MUSIC-Solo": {"EZ-VSL": {"AP": 71.5, "IoU@0.5": 45.8, "AUC": 41.2},
                   "AVGN": {"AP": 77.2, "IoU@0.5": 58.1, "AUC": 48.5}},
    "VGGSound-Single": {"EZ-VSL": {"AP": 31.3, "IoU@0.5": 38.9, "AUC": 39.5},
                        "AVGN": {"AP": 35.3, "IoU@0.5": 40.8, "AUC": 42.3}},
}

# Table 2 (multi source).
TABLE2 = {
    "MUSIC-Duet": {"EZ-VSL": {"CIoU@0.3": 24.3, "AUC": 21.3},
                   "AVGN": {"CAP": 50.6, "PIAP": 57.2, "CIoU@0.3": 32.5, "AUC": 24.6}},
    "VGGSound-Duet": {"EZ-VSL": {"CIoU@0.3": 20.5, "AUC": 20.2},
                      "AVGN": {"CAP": 21.9, "PIAP": 28.1, "CIoU@0.3": 26.2, "AUC": 23.8}},
}

# Table 3 (ablation on MUSIC): (AVCT, AVG) -> metrics.
TABLE3 = {
    (False, False): {"AP": 71.5, "IoU@0.5": 45.8, "AUC": 41.2, "CAP": 39.7, "PIAP": 43.1, "CIoU@0.3": 24.3, "duet AUC": 21.3},
    (True, False): {"AP": 75.2, "IoU@0.5": 52.3, "AUC": 45.1, "CAP": 46.9, "PIAP": 51.8, "CIoU@0.3": 27.6, "duet AUC": 22.5},
    (False, True): {"AP": 73.6, "IoU@0.5": 48.2, "AUC": 43.5, "CAP": 42.8, "PIAP": 49.5, "CIoU@0.3": 25.3, "duet AUC": 21.8},
    (True, True): {"AP": 77.2, "IoU@0.5": 58.1, "AUC": 48.5, "CAP": 50.6, "PIAP": 57.2, "CIoU@0.3": 32.5, "duet AUC": 24.6},
}

# Supplement Table 1 (MUSIC): (depth, assignment) -> metrics.
SUPP_TABLE1 = {
    (1, "softmax"): {"AP": 75.8, "IoU@0.5": 53.6, "AUC": 45.7, "CAP": 47.6, "PIAP": 53.1, "CIoU@0.3": 28.5, "duet AUC": 23.2},
    (3, "softmax"): {"AP": 77.2, "IoU@0.5": 58.1, "AUC": 48.5, "CAP": 50.6, "PIAP": 57.2, "CIoU@0.3": 32.5, "duet AUC": 24.6},
    (6, "softmax"): {"AP": 76.7, "IoU@0.5": 57.5, "AUC": 47.9, "CAP": 50.1, "PIAP": 56.9, "CIoU@0.3": 32.1, "duet AUC": 24.3},
    (12, "softmax"): {"AP": 76.3, "IoU@0.5": 57.3, "AUC": 47.6, "CAP": 49.8, "PIAP": 56.7, "CIoU@0.3": 31.7, "duet AUC": 24.1},
    (3, "hard"): {"AP": 73.2, "IoU@0.5": 47.6, "AUC": 43.1, "CAP": 42.5, "PIAP": 49.2, "CIoU@0.3": 24.8, "duet AUC": 21.5},
}

# Flexible number of sources (Sec. 4.3): 3-source mixtures on VGGSound-Duet.
TRIO_VGGSOUND = {"CAP": 18.5, "PIAP": 23.7, "CIoU@0.3": 22.7, "AUC": 21.8}

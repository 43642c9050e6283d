"""Fail CI when any test marked slurm was skipped or did not run (the cluster must really have been used)."""

import sys
import xml.etree.ElementTree as ET

expected_file, junit_file = sys.argv[1:3]
expected = set(open(expected_file).read().split())
ran = {}
for case in ET.parse(junit_file).iter("testcase"):
    ran[case.get("classname").replace(".", "/") + ".py::" + case.get("name")] = case.find("skipped") is None
missing = sorted(t for t in expected if not ran.get(t))
if not expected or missing:
    sys.exit(f"slurm tests skipped or not run ({len(missing)} of {len(expected)}): {missing}")
print(f"all {len(expected)} slurm tests ran")

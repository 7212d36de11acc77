# The AT vectors on the MicroPython unix port (run by test_at_core.py).
# argv: path of at_vectors.json (this folder is added to the import path). Prints "PASS <n>" or one FAIL line per vector.
import sys
import json

sys.path.append(sys.argv[0].rsplit("/", 1)[0])  # this folder, for at_vector_runner

import at_modem
import at_vector_runner

with open(sys.argv[1]) as f:
    vectors = json.load(f)["vectors"]
fails = at_vector_runner.check_all(at_modem, vectors)
for f in fails:
    print("FAIL", f)
if not fails:
    print("PASS", len(vectors))

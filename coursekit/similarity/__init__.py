"""Which teams share answers: similarity of code and free text, per answer cell, across the class.

The flow: `answers` reads every team's answer cells (and the judge's [FAILED] lines) from the
autograded notebooks, `fingerprints` turns each answer into features (copydetect's winnowed
fingerprints of code, word shingles of free text), `scoring` indexes the features, finds candidate
pairs through features few teams share and scores them, and `records` holds what comes out.
Reports (coursekit.reports.similarity_report) render the records; a pair is a reason to look,
never a grade.
"""

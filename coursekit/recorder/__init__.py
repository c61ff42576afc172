"""The kit's code that runs inside a student's kernel, and nothing else of the kit.

The sandbox shows the kernel this folder alone (coursekit.sandbox): the
recorder hidden test cells call (collect), the inputs of a challenge
(challenges), the wire format (wire), repairs that arrive as data (receive)
and the kernel itself (kernel). None of it knows a right answer; the judge,
the references and the grader's secrets stay in the grading process.

Modules here import only each other (relatively), the standard library,
numpy, safetensors, torch and IPython, so the folder works on its own.
"""

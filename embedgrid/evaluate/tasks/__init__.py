"""Offline MTEB tasks built from real, human-labelled text that registry packages ship (docs/evaluation.md).

Every task is a real mteb ``AbsTask*`` subclass with full metadata, evaluated by mteb's own evaluators. Tasks whose
text comes from a training source carry ``in_domain = True`` (the WordNet tasks); the runner writes the flag into
each scores.json entry. Summarization has no offline task: no registry ships a summarization set with human scores.
"""
from embedgrid.evaluate.tasks import foodeval
from embedgrid.evaluate.tasks.classification import (
    ConventionSpeechPartyClassification,
    DebatePartyClassification,
    FineFoodsClassification,
    FoodEvalCuisineClassification,
    PangLeePolarityClassification,
    RottenTomatoesClassification,
)
from embedgrid.evaluate.tasks.clustering import (
    ChatterbotTopicClustering,
    DebateSpeakerClustering,
    FoodEvalCuisineClustering,
    MiniNewsgroupsClustering,
    RogetCategoryClustering,
    RottenTomatoesMovieClustering,
    WordNetLexnameClustering,
)
from embedgrid.evaluate.tasks.reranking import RERANKING
from embedgrid.evaluate.tasks.retrieval import ChatterbotQARetrieval, RottenTomatoesPlotRetrieval
from embedgrid.evaluate.tasks.sts import WORD_PAIR_TASKS, LeeDocumentSTS
from embedgrid.evaluate.tasks.wordnet import (
    WordNetGlossPairClassification,
    WordNetReverseDictionaryRetrieval,
    WordNetSiblingReranking,
)

OFFLINE_TASK_CLASSES = [
    LeeDocumentSTS, *WORD_PAIR_TASKS,
    FineFoodsClassification, RottenTomatoesClassification, PangLeePolarityClassification,
    FoodEvalCuisineClassification, ConventionSpeechPartyClassification, DebatePartyClassification,
    WordNetLexnameClustering, RottenTomatoesMovieClustering, MiniNewsgroupsClustering, FoodEvalCuisineClustering,
    DebateSpeakerClustering, ChatterbotTopicClustering, RogetCategoryClustering,
    WordNetReverseDictionaryRetrieval, *foodeval.RETRIEVAL, RottenTomatoesPlotRetrieval, ChatterbotQARetrieval,
    WordNetSiblingReranking, *RERANKING,
    WordNetGlossPairClassification, *foodeval.PAIRS,
]
OFFLINE_TASKS = {cls.metadata.name: cls for cls in OFFLINE_TASK_CLASSES}

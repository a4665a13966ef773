"""Token ids of a conversation through one model's chat template (what an aligned model sees).

The template is the one stored in the GGUF, or an override; it renders in the sandbox of
:mod:`baco_local.engine.prompts`, and BOS is added only when the model wants it and the template did
not already write it.
"""

from __future__ import annotations

from typing import Sequence

from .backend import LoadedModel
from ..errors import ChatTemplateError
from .prompts import Message, compile_chat_template, render_chat


class ChatPrompter:
    """Renders and tokenizes conversations for one loaded model."""

    def __init__(self, model: LoadedModel, template: str | None = None) -> None:
        """``template`` overrides the GGUF's own chat template."""
        source = template if template is not None else model.summary.chat_template
        if not source:
            raise ChatTemplateError(f"{model.path.name} has no chat template; pass --chat-template-file")
        self.model = model
        self._template = compile_chat_template(source)

    def __call__(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of ``messages`` followed by the assistant's generation prompt."""
        info = self.model.info
        bos = self.model.token_text(info.bos) if info.bos is not None else ""
        eos = self.model.token_text(info.eos) if info.eos is not None else ""
        text = render_chat(self._template, messages, bos_token=bos, eos_token=eos)
        return self.model.tokenize(text, add_bos=info.add_bos and not (bos and text.startswith(bos)),
                                   special=True)

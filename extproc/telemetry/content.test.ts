import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MaskingPolicy } from '../config/contract.js';
import { compileMasking } from '../masking/compiled.js';
import {
  answerText,
  CompletionCapture,
  MAX_CONTENT_CHARS,
  maskedForTrace,
  promptText,
} from './content.js';

const masking = compileMasking(MaskingPolicy.parse({}));

describe('content for traces', () => {
  it('masks what it records, whatever the request masking did', () => {
    const out = maskedForTrace(masking, 'mail ada@example.com, keep [EMAIL_1]');
    assert.ok(!out.includes('ada@example.com'));
    assert.match(out, /\[EMAIL_\d+\]/);
    assert.match(out, /keep \[EMAIL_1\]/, 'placeholders already there stay as they are');
  });

  it('bounds a long text and marks the cut', () => {
    const out = maskedForTrace(masking, 'x'.repeat(MAX_CONTENT_CHARS + 10));
    assert.equal(out.length, MAX_CONTENT_CHARS + '…[+10 chars]'.length);
    assert.ok(out.endsWith('…[+10 chars]'));
  });

  it('takes the conversation part of each request shape', () => {
    assert.equal(
      promptText('chat', { model: 'm', messages: [{ role: 'user', content: 'hi' }], user: 'u' }),
      '{"messages":[{"role":"user","content":"hi"}]}',
    );
    assert.equal(
      promptText('messages', { model: 'm', system: 's', messages: [] }),
      '{"system":"s","messages":[]}',
    );
    assert.equal(promptText('embeddings', { model: 'm' }), undefined);
  });

  it('reads the answer text of a whole JSON answer and of a stream cut anywhere', () => {
    const json = new CompletionCapture('chat');
    json.start(200, false, true);
    const body = JSON.stringify({
      object: 'chat.completion',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Hello [EMAIL_1]' },
          finish_reason: 'stop',
        },
      ],
    });
    json.push(Buffer.from(body.slice(0, 20)));
    json.push(Buffer.from(body.slice(20)));
    assert.equal(json.text(), 'Hello [EMAIL_1]');

    const sse = new CompletionCapture('chat');
    sse.start(200, true, true);
    const chunk = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const stream =
      chunk({ role: 'assistant', content: 'Hel' }) +
      chunk({ content: 'lo' }) +
      chunk({}, 'stop') +
      'data: [DONE]\n\n';
    for (let i = 0; i < stream.length; i += 7) sse.push(Buffer.from(stream.slice(i, i + 7)));
    assert.equal(sse.text(), 'Hello');

    const error = new CompletionCapture('chat');
    error.start(500, false, true);
    error.push(Buffer.from('{"error":{}}'));
    assert.equal(error.text(), undefined, 'an error answer is no completion');
    assert.equal(
      answerText('messages', { content: [{ type: 'text', text: 'a' }, { type: 'tool_use' }] }),
      'a',
    );
  });
});

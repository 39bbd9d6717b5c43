// The official Google Gen AI SDK (@google/genai) pointed straight at the mock Gemini API:
// generateContent and generateContentStream (SSE) parse, function calls and usage included; a
// wrong key is refused as Google refuses it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GoogleGenAI } from '@google/genai';
import { startMockGemini, type MockGemini } from '../../operator/mock-provider/gemini.js';

const KEY = 'AIza-mock-gemini-key';
let mock: MockGemini;

function client(apiKey = KEY): GoogleGenAI {
  return new GoogleGenAI({ apiKey, httpOptions: { baseUrl: mock.url } });
}

before(async () => {
  mock = await startMockGemini({ apiKey: KEY });
});
after(async () => {
  await mock.close();
});

describe('mock Gemini and the official @google/genai SDK', () => {
  it('generateContent: text, finish reason and usage', async () => {
    mock.take();
    const r = await client().models.generateContent({
      model: 'gemini-2.5-flash',
      contents: 'Hello there',
      config: { systemInstruction: 'Be brief.', maxOutputTokens: 50 },
    });
    assert.equal(r.text, 'echo: Hello there');
    assert.equal(r.candidates?.[0]?.finishReason, 'STOP');
    assert.equal(r.usageMetadata?.promptTokenCount, 12);
    assert.equal(r.usageMetadata?.candidatesTokenCount, 3);
    const [seen] = mock.take();
    assert.equal(seen!.model, 'gemini-2.5-flash');
    assert.equal(seen!.headers['x-goog-api-key'], KEY);
    assert.deepEqual(seen!.json?.['systemInstruction'], {
      parts: [{ text: 'Be brief.' }],
      role: 'user',
    });
  });

  it('generateContent with a function call', async () => {
    mock.enqueue({ toolCall: { name: 'weather', arguments: { city: 'Oslo' } } });
    const r = await client().models.generateContent({
      model: 'gemini-2.5-flash',
      contents: 'Weather?',
      config: { tools: [{ functionDeclarations: [{ name: 'weather' }] }] },
    });
    assert.deepEqual(
      r.functionCalls?.map((c) => ({ name: c.name, args: c.args })),
      [{ name: 'weather', args: { city: 'Oslo' } }],
    );
  });

  it('generateContentStream: text in pieces, usage on the last event', async () => {
    mock.enqueue({ content: 'Grüße aus Oslo', chunkChars: 3, usage: { input: 4, output: 5 } });
    const s = await client().models.generateContentStream({
      model: 'gemini-2.5-flash',
      contents: 'Hi',
    });
    let text = '';
    let last: unknown;
    let n = 0;
    for await (const c of s) {
      text += c.text ?? '';
      n++;
      if (c.usageMetadata) last = c.usageMetadata.candidatesTokenCount;
    }
    assert.equal(text, 'Grüße aus Oslo');
    assert.ok(n >= 5);
    assert.equal(last, 5);
  });

  it('a wrong key is refused with Google’s error', async () => {
    await assert.rejects(
      client('AIza-wrong').models.generateContent({ model: 'gemini-2.5-flash', contents: 'x' }),
      (e: Error & { status?: number }) => e.status === 400 && /API key not valid/.test(e.message),
    );
  });
});

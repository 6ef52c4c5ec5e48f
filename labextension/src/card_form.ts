/**
 * The typed form of a pending approval's card in the sidebar (`dn.approval(..., form=F)`):
 * its fields drawn by the run graph's `renderForm` (text, number, choice, yes/no, long
 * text, checked as they are typed), and the card's Approve button enabled only while every
 * field is valid. The engine checks the values again and names a field it refuses.
 */
import { IFormSchema } from './api';
import { IFormCheck, renderForm } from './graph';
import { el } from './util';

export class CardForm {
  readonly node: HTMLElement;

  constructor(schema: IFormSchema, key: string) {
    this._schema = schema;
    this._hint = el('div', 'jp-DurableApproval-hint');
    this._hint.setAttribute('role', 'status');
    this._form = renderForm(schema, this._store, {
      focusPrefix: `card:${key}`,
      onChange: () => this.sync()
    });
    // the graph's stylesheet and theme variables apply inside a .dng-root
    this.node = el('div', 'jp-DurableApproval-form dng-root');
    this.node.append(this._form.node, this._hint);
  }

  /** The button that sends the values: disabled while a field is missing or wrong. */
  gate(approve: HTMLButtonElement): void {
    this._approve = approve;
    this.sync();
  }

  /** The values to send, typed as the form says. */
  values(): Record<string, unknown> {
    return this._check().values;
  }

  /** Show every field's problem (after a refused decision) and update the button. */
  sync(showAll = false): void {
    if (showAll) {
      this._store.showAll = true;
      this._form.update();
    }
    const bad = Object.keys(this._check().errors).map(
      name => String(this._schema.properties[name]?.title ?? name)
    );
    if (this._approve) {
      this._approve.disabled = bad.length > 0;
      this._approve.title = bad.length
        ? `To approve, fill in or fix: ${bad.join(', ')}`
        : 'Approve and resume the run';
    }
    this._hint.textContent = bad.length ? `To approve: ${bad.join(', ')}` : '';
  }

  private _check(): IFormCheck {
    return this._form.check();
  }

  private _schema: IFormSchema;
  private _store: Record<string, unknown> = {};
  private _form: ReturnType<typeof renderForm>;
  private _hint: HTMLElement;
  private _approve: HTMLButtonElement | null = null;
}

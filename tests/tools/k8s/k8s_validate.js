#!/usr/bin/env node
// k8s_validate.js: strict validation of Kubernetes objects (multi-document
// YAML, e.g. `helm template` output) against the Kubernetes API schema, with
// unknown fields rejected at every level.
//
//   node k8s_validate.js [--schema-dir DIR] FILE... ("-" reads stdin)
//
// Exit 0: every object valid; 1: errors (one line each: file, kind/name, a
// JSON path, the message); 2: usage or schema problems.
//
// Why a validator of our own: kubernetes-models (the npm package whose data we
// use) checks types, formats, enums and required fields, but lets unknown
// fields through; so does the API server unless asked for strict field
// validation, which is how a typo (`readinesProbe:`) ships unnoticed. No
// ready-made validator on the registries we reach closes the objects.
//
// Where the schema comes from: kubernetes-models 4.5.1 (Kubernetes 1.33 API:
// it has the native sidecars' initContainers[].restartPolicy), pinned by
// package-lock.json and installed by fetch-schema.sh into build/k8s-schema.
// Its 4.x series runs on Node 20 (5.x wants Node 22). The package ships each
// definition twice: as a compiled ajv validator (_schemas/*.js) and as a
// TypeScript declaration generated from the same OpenAPI definition, which
// lists every field with its type (string, number, boolean, enum literals,
// arrays, string-keyed maps, references), `?` marking the optional ones.
// Two layers check each object:
//   1. strict: our walk over the declarations (below). Objects are closed:
//      a field that the definition does not list is an error. Maps
//      (additionalProperties in the OpenAPI, e.g. labels, resources.limits)
//      take any key; a definition with no fields at all (RawExtension,
//      FieldsV1: x-kubernetes-preserve-unknown-fields or free-form objects
//      in the OpenAPI) takes anything. int-or-string and Quantity are
//      `number | string`. Required fields, enums and JSON types are checked
//      here too.
//   2. the package's own compiled validator, for what declarations do not
//      carry: integer vs number and the int32/int64 formats. Its errors at a
//      path layer 1 already reported are left out, so each mistake is told
//      once.
'use strict';
const fs = require('fs');
const path = require('path');

function usage(msg) {
	if (msg) process.stderr.write(`k8s_validate: ${msg}\n`);
	process.stderr.write('usage: k8s_validate.js [--schema-dir DIR] FILE... (- for stdin)\n' +
		'  --schema-dir DIR  the folder fetch-schema.sh installed (default: build/k8s-schema)\n');
	process.exit(2);
}

// ---- Reading the declarations ------------------------------------------

// A tiny parser for the declaration files kubernetes-models generates. The
// grammar they use is small and regular:
//   type    := primary ('|' primary)*
//   primary := string | number | boolean | any | unknown | object | null
//            | "literal" | Ident | Array<type> | '{' '[key: string]': type ';' '}' | '{' '}'
function tokenize(src) {
	const toks = [];
	const re = /\s*("(?:[^"\\]|\\.)*"|[A-Za-z_$][A-Za-z0-9_$]*|\[key: string\]|[{}<>|;:?\[\]()])/y;
	let m;
	re.lastIndex = 0;
	while (re.lastIndex < src.length) {
		const at = re.lastIndex;
		if (!(m = re.exec(src))) {
			if (/^\s*$/.test(src.slice(at))) break;
			throw new Error(`cannot read declaration near: ${src.slice(at, at + 40)}`);
		}
		toks.push(m[1]);
	}
	return toks;
}

function parseType(toks, pos) {
	const alts = [];
	for (;;) {
		let t;
		[t, pos] = parsePrimary(toks, pos);
		alts.push(t);
		if (toks[pos] !== '|') break;
		pos++;
	}
	if (alts.length === 1) return [alts[0], pos];
	if (alts.every((a) => a.t === 'enum')) return [{ t: 'enum', v: alts.flatMap((a) => a.v) }, pos];
	return [{ t: 'union', of: alts }, pos];
}

function parsePrimary(toks, pos) {
	const tok = toks[pos++];
	if (tok === undefined) throw new Error('declaration ends inside a type');
	if (tok[0] === '"') return [{ t: 'enum', v: [JSON.parse(tok)] }, pos];
	if (tok === 'string' || tok === 'number' || tok === 'boolean') return [{ t: tok }, pos];
	if (tok === 'any' || tok === 'unknown' || tok === 'object') return [{ t: 'any' }, pos];
	if (tok === 'null') return [{ t: 'null' }, pos];
	if (tok === 'Array') {
		if (toks[pos++] !== '<') throw new Error('Array without <');
		let items;
		[items, pos] = parseType(toks, pos);
		if (toks[pos++] !== '>') throw new Error('Array without >');
		return [{ t: 'array', items }, pos];
	}
	if (tok === '{') {
		if (toks[pos] === '}') return [{ t: 'any' }, pos + 1];
		if (toks[pos][0] === '"') {
			// An inline object (StatefulSet's volumeClaimTemplates).
			let props;
			[props, pos] = parseFields(toks, pos, '}');
			return [{ t: 'inline', props }, pos + 1];
		}
		if (toks[pos] !== '[key: string]' || toks[pos + 1] !== ':')
			throw new Error(`unexpected inline object: ${toks.slice(pos - 1, pos + 4).join(' ')}`);
		let values;
		[values, pos] = parseType(toks, pos + 2);
		if (toks[pos] === ';') pos++;
		if (toks[pos++] !== '}') throw new Error('map without }');
		return [{ t: 'map', values }, pos];
	}
	if (/^[A-Za-z_$]/.test(tok)) return [{ t: 'ref', name: tok }, pos];
	throw new Error(`unexpected token ${tok}`);
}

// Fields `"name"?: type;` up to the token `end`; returns [props, pos of end].
function parseFields(toks, pos, end) {
	const props = {};
	while (pos < toks.length && toks[pos] !== end) {
		const name = JSON.parse(toks[pos++]);
		let optional = false;
		if (toks[pos] === '?') { optional = true; pos++; }
		if (toks[pos++] !== ':') throw new Error(`field ${name} without ':'`);
		let type;
		[type, pos] = parseType(toks, pos);
		if (toks[pos] === ';') pos++;
		props[name] = { type, required: !optional };
	}
	if (toks[pos] !== end) throw new Error('fields without their closing brace');
	return [props, pos];
}

// One declaration file: its canonical name (the IIoK8s... alias it exports)
// and either an interface (fields) or a type alias.
function readDeclaration(file) {
	const src = fs.readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
	const exp = src.match(/export \{ (\w+) as (IIoK8s\w+)/);
	if (!exp) return null;
	const [, local, canon] = exp;
	const alias = src.match(new RegExp(`export declare type ${local} = ([^;]+);`));
	if (alias) {
		const [type] = parseType(tokenize(alias[1]), 0);
		return { canon, local, def: { t: 'alias', type } };
	}
	const iface = src.match(new RegExp(`export interface ${local}(?: extends [\\w, ]+)? \\{([\\s\\S]*?)\\n\\}`));
	if (!iface) return null;
	const [props] = parseFields(tokenize(iface[1]), 0, undefined);
	return { canon, local, def: { t: 'object', props } };
}

function walkDts(dir, out) {
	for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
		const p = path.join(dir, e.name);
		if (e.isDirectory()) {
			if (e.name !== '_schemas' && e.name !== 'node_modules') walkDts(p, out);
		} else if (e.name.endsWith('.d.ts') && e.name !== 'index.d.ts') out.push(p);
	}
	return out;
}

// Loads every definition; returns {defs: canon -> def, kinds: "apiVersion/kind" -> {canon, validate}}.
function loadSchema(dir) {
	const nm = path.join(dir, 'node_modules');
	const pkgs = [path.join(nm, 'kubernetes-models'), path.join(nm, '@kubernetes-models', 'apimachinery')];
	const defs = {}, kinds = {};
	for (const pkg of pkgs) {
		if (!fs.existsSync(path.join(pkg, 'package.json')))
			throw new Error(`${pkg} is not installed (run tests/tools/k8s/fetch-schema.sh)`);
		for (const f of walkDts(pkg, [])) {
			const d = readDeclaration(f);
			if (!d) continue;
			// References to the file's own local name (recursive types such as
			// JSONSchemaProps) become the canonical one.
			const fix = (t) => {
				if (t.t === 'ref' && t.name === d.local) t.name = d.canon;
				if (t.items) fix(t.items);
				if (t.values) fix(t.values);
				if (t.of) t.of.forEach(fix);
				if (t.type) fix(t.type);
				if (t.props) Object.values(t.props).forEach((f) => fix(f.type));
			};
			fix(d.def);
			defs[d.canon] = d.def;
			const p = d.def.props;
			if (p && p.apiVersion && p.kind && p.apiVersion.type.t === 'enum' && p.kind.type.t === 'enum' &&
			    p.apiVersion.type.v.length === 1 && p.kind.type.v.length === 1) {
				const js = path.join(pkg, '_schemas', d.canon.slice(1) + '.js');
				kinds[`${p.apiVersion.type.v[0]}/${p.kind.type.v[0]}`] = { canon: d.canon, js };
			}
		}
	}
	if (!defs.IIoK8sApiCoreV1Container || !defs.IIoK8sApiCoreV1Container.props.restartPolicy)
		throw new Error('the schema has no Container.restartPolicy (need Kubernetes >= 1.29 definitions)');
	return { defs, kinds };
}

// ---- Layer 1: the strict walk -------------------------------------------

function jtype(v) {
	if (v === null) return 'null';
	if (Array.isArray(v)) return 'array';
	return typeof v;
}

function fieldPath(p, key) {
	return /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? `${p}.${key}` : `${p}[${JSON.stringify(key)}]`;
}

function describe(t) {
	switch (t.t) {
	case 'enum': return t.v.map((x) => JSON.stringify(x)).join(' | ');
	case 'array': return `array of ${describe(t.items)}`;
	case 'map': return `map of ${describe(t.values)}`;
	case 'union': return t.of.map(describe).join(' or ');
	case 'ref': return t.name.replace(/^IIoK8s(ApimachineryPkg(Apis|Api|Util|Runtime)?|Api)/, '');
	default: return t.t;
	}
}

// Does value v fit type t? Returns a list of [path, message].
function check(schema, t, v, p, errs) {
	switch (t.t) {
	case 'any': return;
	case 'null': if (v !== null) errs.push([p, `must be null, got ${jtype(v)}`]); return;
	case 'string': case 'number': case 'boolean':
		if (jtype(v) !== t.t) errs.push([p, `must be a ${t.t}, got ${jtype(v)} ${JSON.stringify(v)}`]);
		return;
	case 'enum':
		if (!t.v.includes(v)) errs.push([p, `must be one of ${describe(t)}, got ${JSON.stringify(v)}`]);
		return;
	case 'array':
		if (!Array.isArray(v)) { errs.push([p, `must be an array (${describe(t)}), got ${jtype(v)}`]); return; }
		v.forEach((x, i) => check(schema, t.items, x, `${p}[${i}]`, errs));
		return;
	case 'map':
		if (jtype(v) !== 'object') { errs.push([p, `must be an object (${describe(t)}), got ${jtype(v)}`]); return; }
		for (const [k, x] of Object.entries(v)) check(schema, t.values, x, fieldPath(p, k), errs);
		return;
	case 'union': {
		// The first alternative that fits; otherwise name them all.
		for (const alt of t.of) {
			const e = [];
			check(schema, alt, v, p, e);
			if (!e.length) return;
		}
		errs.push([p, `must be ${describe(t)}, got ${jtype(v)} ${JSON.stringify(v)}`]);
		return;
	}
	case 'inline': checkObject(schema, null, t, v, p, errs); return;
	case 'ref': {
		const d = schema.defs[t.name];
		if (!d) { errs.push([p, `schema: no definition ${t.name}`]); return; }
		if (d.t === 'alias') {
			// Named scalars (IntOrString, Quantity, Time): the error names them.
			const e = [];
			check(schema, d.type, v, p, e);
			if (e.length && ['union', 'string', 'number', 'boolean'].includes(d.type.t))
				errs.push([p, `must be ${describe(t)} (${describe(d.type)}), got ${jtype(v)} ${JSON.stringify(v)}`]);
			else errs.push(...e);
			return;
		}
		checkObject(schema, t.name, d, v, p, errs);
		return;
	}
	default: errs.push([p, `schema: unknown type kind ${t.t}`]);
	}
}

function checkObject(schema, name, d, v, p, errs) {
	const what = name ? describe({ t: 'ref', name }) : 'object';
	if (jtype(v) !== 'object') { errs.push([p, `must be an object (${what}), got ${jtype(v)}`]); return; }
	const props = d.props;
	// No fields declared: a free-form object in the OpenAPI.
	if (!Object.keys(props).length) return;
	for (const [k, f] of Object.entries(props))
		if (f.required && (v[k] === undefined || v[k] === null))
			errs.push([fieldPath(p, k), `required field "${k}" is missing`]);
	for (const [k, x] of Object.entries(v)) {
		const f = props[k];
		if (!f) {
			errs.push([fieldPath(p, k), `unknown field "${k}" (${what} has no such field)`]);
			continue;
		}
		// null for an optional field is "not set", as the API server reads it.
		if (x === null && !f.required) continue;
		check(schema, f.type, x, fieldPath(p, k), errs);
	}
}

// ---- Layer 2: the package's compiled validator ---------------------------

function ajvPath(instancePath) {
	let out = '';
	for (const seg of instancePath.split('/').slice(1)) {
		const k = seg.replace(/~1/g, '/').replace(/~0/g, '~');
		out = /^\d+$/.test(k) ? `${out}[${k}]` : fieldPath(out, k);
	}
	return out;
}

// The compiled validators carry no messages; say what the keyword means.
function ajvMessage(e) {
	const q = e.params || {};
	switch (e.keyword) {
	case 'type': return `must be ${q.type}`;
	case 'format': return `must match format "${q.format}"`;
	case 'enum': return `must be one of ${(q.allowedValues || []).map((x) => JSON.stringify(x)).join(' | ')}`;
	case 'required': return `required field "${q.missingProperty}" is missing`;
	default: return `${e.keyword} ${JSON.stringify(q)}`;
	}
}

function packageErrors(kind, obj, seen) {
	const validate = require(kind.js).validate;
	if (typeof validate !== 'function') throw new Error(`${kind.js} has no validate()`);
	if (validate(obj)) return [];
	const out = [];
	for (const e of validate.errors || []) {
		// Wrappers around alternatives (nullable refs) restate what the
		// inner errors say.
		if (['oneOf', 'anyOf', 'allOf', 'if', 'not'].includes(e.keyword)) continue;
		let p = ajvPath(e.instancePath);
		if (e.keyword === 'required') p = fieldPath(p, e.params.missingProperty);
		if ([...seen].some((s) => p === s || p.startsWith(s + '.') || p.startsWith(s + '[') ||
			s.startsWith(p + '.') || s.startsWith(p + '['))) continue;
		const msg = `${e.message || ajvMessage(e)} (kubernetes-models)`;
		if (!out.some(([q, m]) => q === (p || '.') && m === msg)) out.push([p || '.', msg]);
	}
	return out;
}

// ---- Main ---------------------------------------------------------------

function main(argv) {
	let schemaDir = path.resolve(__dirname, '../../../build/k8s-schema');
	const files = [];
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		if (a === '--schema-dir') { if (++i >= argv.length) usage('--schema-dir needs a folder'); schemaDir = argv[i]; }
		else if (a.startsWith('--schema-dir=')) schemaDir = a.slice('--schema-dir='.length);
		else if (a === '-h' || a === '--help') usage();
		else if (a.startsWith('-') && a !== '-') usage(`unknown option ${a}`);
		else files.push(a);
	}
	if (!files.length) usage('no input file');
	let yaml, schema;
	try {
		const y = path.join(schemaDir, 'node_modules', 'js-yaml');
		if (!fs.existsSync(y)) throw new Error(`${y} is not installed (run tests/tools/k8s/fetch-schema.sh)`);
		yaml = require(y);
		schema = loadSchema(schemaDir);
	} catch (e) {
		process.stderr.write(`k8s_validate: cannot load the schema from ${schemaDir}: ${e.message}\n`);
		process.exit(2);
	}
	let objects = 0, errors = 0;
	for (const file of files) {
		let docs;
		try {
			const text = fs.readFileSync(file === '-' ? 0 : file, 'utf8');
			docs = yaml.loadAll(text);
		} catch (e) {
			console.log(`${file}: cannot read YAML: ${e.message}`);
			errors++;
			continue;
		}
		docs.forEach((obj, i) => {
			if (obj === null || obj === undefined) return; // empty document (a template that rendered nothing)
			objects++;
			const report = (id, p, msg) => { console.log(`${file}: ${id}: ${p || '.'}: ${msg}`); errors++; };
			if (jtype(obj) !== 'object') { report(`document ${i + 1}`, '.', `not an object (${jtype(obj)})`); return; }
			const name = obj.metadata && typeof obj.metadata === 'object' ? obj.metadata.name : undefined;
			const id = `${obj.kind || '(no kind)'}/${name || '(no name)'}`;
			const kind = schema.kinds[`${obj.apiVersion}/${obj.kind}`];
			if (!kind) {
				report(id, '.', `unknown apiVersion/kind ${JSON.stringify(obj.apiVersion)}/${JSON.stringify(obj.kind)} (not in the Kubernetes API schema)`);
				return;
			}
			const errs = [];
			checkObject(schema, kind.canon, schema.defs[kind.canon], obj, '', errs);
			// Every object the API server stores has a name (metadata.name is
			// optional in the schema only for generateName and nested uses).
			if (!name && !(obj.metadata && obj.metadata.generateName))
				errs.push(['.metadata.name', 'required field "name" is missing']);
			const seen = new Set(errs.map(([p]) => p));
			for (const [p, msg] of errs.concat(packageErrors(kind, obj, seen))) report(id, p, msg);
		});
	}
	console.log(`k8s_validate: ${objects} objects, ${errors} errors`);
	process.exit(errors ? 1 : 0);
}

main(process.argv.slice(2));

"""WeChat pages of the sample account, in the structures mp.weixin.qq.com serves (2025-2026 layout).

Owns rendering: the album (合集) first screen as HTML, the album JSON paging API, article pages
(item_show_type 0, 8 image share, 10 text share) and the terminal state pages. Pure functions over a
`Catalog`; `base` is the scheme and host the links must point at (the sample server's own host).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from crawler.samples.catalog import SHANGHAI, WechatItem, _hex
from crawler.samples.content import ACCOUNT_ID, ACCOUNT_NAME, ALBUM_ID, BIZ, COLUMN, unit_name

UIN = base64.b64decode(BIZ).decode()
ALBUM_FIRST_SCREEN = 10
MAX_COUNT = 20


def _attr(text: str) -> str:
    return html.escape(text, quote=True)


def _js_single(text: str) -> str:
    """A value for a single-quoted JS literal inside a <script> block."""
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("</", "<\\/")


def _js_double(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("</", "<\\/")


def _jsdecode(text: str) -> str:
    """The argument of WeChat's JsDecode('…'): quotes, angle brackets, & and newlines as \\x escapes."""
    out = text.replace("\\", "\\\\")
    for char, code in (("'", "\\x27"), ('"', "\\x22"), ("<", "\\x3c"), (">", "\\x3e"), ("&", "\\x26"), ("\n", "\\x0a")):
        out = out.replace(char, code)
    return out


def cover_url(item: WechatItem, size: str = "0") -> str:
    return f"https://mmbiz.qpic.cn/mmbiz_jpg/{_hex(f'cover:{item.msgid}:{item.itemidx}', 54)}/{size}?wx_fmt=jpeg"


def image_url(seed: str) -> str:
    return f"https://mmbiz.qpic.cn/mmbiz_jpg/{_hex(f'img:{seed}', 54)}/640?wx_fmt=jpeg&from=appmsg"


def album_link_html(base: str) -> str:
    return f"{base}/mp/appmsgalbum?__biz={BIZ}&amp;action=getalbum&amp;album_id={ALBUM_ID}#wechat_redirect"


# --- album ------------------------------------------------------------------------------------

_ALBUM_STYLE = (
    ".album__list-item{padding:15px 20px;min-height:64px;display:flex;align-items:center;position:relative}"
    ".album__item-content{flex:1}.album__item-img{width:6.4em;height:6.4em;background-size:cover;margin-left:16px}"
    ".album__item-info{font-size:0;color:rgba(0,0,0,0.3)}.album__item-info-item{font-size:14px}"
    ".album__label-title{font-size:22px;line-height:30px}"
)


def _album_li(item: WechatItem, base: str) -> str:
    title = item.story.full_title
    key = f"{item.msgid}_{item.itemidx}"
    return f"""              <li class="album__list-item js_album_item js_wx_tap_highlight wx_tap_cell"
                data-msgid="{item.msgid}"
                data-itemidx="{item.itemidx}"
                data-link="{_attr(item.album_link(base))}"
                data-title="{_attr(title)}"
                data-is_read="0"
                data-pos_num="{item.pos_num}"
              >
                <div class="album__item-content">
                  <div class="album__item-title weui-mask-ellipsis__wrp album_article_default" role="link" tabindex="0"
                    aria-labelledby="album__item-title_{key} js_a11y_comma album__item-info_{key}">
                    <div aria-hidden="true" class="weui-mask-ellipsis__text album_title_wrp">
                      <span class="album__item-title-wrp">{html.escape(title)}</span>
                    </div>
                    <div class="weui-mask-ellipsis" aria-hidden="true">
                      <div class="weui-mask-ellipsis__text album_title_wrp" id="album__item-title_{key}">
                        <span class="album__item-title-wrp">{html.escape(title)}</span>
                      </div>
                    </div>
                  </div>
                  <div aria-hidden="true" class="album__item-info" id="album__item-info_{key}">
                    <span class="js_article_create_time album__item-info-item">{item.create_time}</span>
                  </div>
                </div>
                <div aria-hidden="true" class="album__item-img" style="background-image: url({cover_url(item, "300")});"></div>
              </li>
"""


def _cgi_article(item: WechatItem, base: str) -> str:
    return f"""						{{
						title: '{_js_single(item.story.full_title)}',
						create_time: '{item.create_time}',
						cover_img_1_1: '{cover_url(item, "300")}',
						url: '{_js_single(_attr(item.album_link(base)))}',
						read_count: '' || -1,
						msgid: '{item.msgid}',
						itemidx: '{item.itemidx}',
						is_pay_subscribe: '0',
						is_read: '0',
						item_show_type: '{item.show_type}',
					}}"""


def render_album_html(items: Sequence[WechatItem], base: str) -> str:
    """The album's first screen: the 10 newest items as `li.js_album_item` plus `window.cgiData`."""
    first = list(items[:ALBUM_FIRST_SCREEN])
    lis = "".join(_album_li(i, base) for i in first)
    articles = ",\n".join(_cgi_article(i, base) for i in first)
    more = "1" if len(items) > len(first) else "0"
    return f"""<!DOCTYPE html>
<html class="">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<meta http-equiv="X-UA-Compatible" content="IE=edge">
<meta name="viewport" content="width=device-width,initial-scale=1.0,maximum-scale=1.0,user-scalable=0,viewport-fit=cover">
<title>{html.escape(COLUMN)}</title>
<style>{_ALBUM_STYLE}</style>
</head>
<body id="js_album" class="zh_CN wx_wap_page album">
<div class="album js_album_container">
  <div class="album__page_header-wrp">
    <div class="album__page_header">
      <div class="album__page_header-left">
        <div id="js_tag_name" class="album__label-title bold"><span class="tag-icon"></span>{html.escape(COLUMN)}</div>
        <div class="album__label-info">
          <div class="album__author-name">{html.escape(ACCOUNT_NAME)}</div>
          <span class="album__label-info-item">{len(items)} 篇内容</span>
        </div>
      </div>
    </div>
  </div>
  <div class="album__content">
    <ul class="album-sort js_album_sort">
      <li class="album-sort-item js_positive_order">正序</li>
      <li class="album-sort-item js_reverse_order selected">倒序</li>
    </ul>
    <ul class="album__list js_album_list">
{lis}    </ul>
    <div class="weui-loadmore weui-loadmore_default js_loading" style="display: none;"><i class="weui-primary-loading"></i><span class="weui-loadmore__tips">正在加载</span></div>
    <div class="weui-loadmore weui-loadmore_line weui-loadmore_dot js_no_more_album" style="display: none;"><span class="weui-loadmore__tips"></span></div>
  </div>
</div>
<script type="text/javascript" nonce="731428094">
	window.cgiData = {{
		ret: '0',
		albumId: '{ALBUM_ID}',
		from_itemidx: '',
		from_msgid: '',
				title: '{_js_single(COLUMN)}',
				msg_title: '{_js_single(COLUMN)}',
				desc: '',
				nick_name: '{_js_single(ACCOUNT_NAME)}' || '',
				user_name: '{ACCOUNT_ID}' || '',
				article_count: '{len(items)}' * 1,
				is_numbered: '0' * 1,
				is_reverse: '0' * 1,
				albumType: '0' * 1,
				isupdating: '1' * 1,
				articleList: [
{articles}
				],
			continue_flag: '{more}' * 1,
			reverse_continue_flag: '0' * 1,
	}};
</script>
</body>
</html>
"""


def _json_entry(item: WechatItem, base: str) -> dict[str, Any]:
    return {
        "cover_img_1_1": cover_url(item, "300"),
        "cover_theme_color": {"b": str(item.msgid % 256), "g": str(item.msgid // 7 % 256), "r": "200"},
        "create_time": str(item.create_time),
        "is_pay_subscribe": "0",
        "is_read": "0",
        "item_show_type": str(item.show_type),
        "itemidx": str(item.itemidx),
        "key": f"{UIN}_{item.msgid}_{item.itemidx}",
        "msgid": str(item.msgid),
        "pos_num": str(item.pos_num),
        "title": item.story.full_title,
        "tts_is_ban": "0",
        "url": item.album_link(base),
        "user_read_status": "0",
    }


def album_json(
    items: Sequence[WechatItem],
    base: str,
    *,
    count: int = 10,
    begin_msgid: int | None = None,
    begin_itemidx: int | None = None,
    reverse: bool = False,
) -> dict[str, Any]:
    """The JSON paging API. The cursor (begin_msgid, begin_itemidx) is exclusive: the answer holds the
    items strictly after it in list order (newest first; oldest first with is_reverse=1). All values
    are strings; `article_list` is an object when one item is returned and absent past the end."""
    count = max(1, min(MAX_COUNT, count))

    def order(i: WechatItem) -> tuple[int, int]:
        return (i.msgid, -i.itemidx) if reverse else (-i.msgid, i.itemidx)

    ordered = sorted(items, key=order)
    if begin_msgid is None:
        after = ordered
    else:
        cursor = (begin_msgid, -(begin_itemidx or 1)) if reverse else (-begin_msgid, begin_itemidx or 1)
        after = [i for i in ordered if order(i) > cursor]
    page = after[:count]
    resp: dict[str, Any] = {}
    if page:
        entries = [_json_entry(i, base) for i in page]
        resp["article_list"] = entries[0] if len(entries) == 1 else entries
    if begin_msgid is None:
        resp["base_info"] = {
            "album_id": ALBUM_ID,
            "article_count": str(len(items)),
            "description": "",
            "is_first_screen": "1",
            "is_numbered": "0",
            "is_reverse": "1" if reverse else "0",
            "nickname": ACCOUNT_NAME,
            "title": COLUMN,
            "user_name": ACCOUNT_ID,
        }
    else:
        resp["base_info"] = {"is_first_screen": "0", "service_type": "0"}
    resp["continue_flag"] = "1" if len(after) > len(page) else "0"
    resp["is_show_subscribe"] = "0"
    resp["reverse_continue_flag"] = "0" if begin_msgid is None else "1"
    resp["verify_status"] = "0"
    return {"base_resp": {"exportkey_token": "", "ret": 0}, "getalbum_resp": resp}


def album_error_json(ret: int) -> dict[str, Any]:
    return {"base_resp": {"errmsg": "invalid args", "exportkey_token": "", "ret": ret}}


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


# --- article pages ----------------------------------------------------------------------------

_P_STYLE = "text-indent: 2em;line-height: 1.75em;margin-bottom: 16px;text-align: justify;"
_SPAN_STYLE = "font-size: 16px;letter-spacing: 0.5px;color: rgb(51, 51, 51);"
_LEADS = ("一是", "二是", "三是", "四是", "五是", "六是")


def _paragraph(text: str) -> str:
    body = html.escape(text)
    if text.startswith(_LEADS) and "。" in text:
        lead, rest = text.split("。", 1)
        body = f'<strong><span leaf="">{html.escape(lead)}。</span></strong><span leaf="">{html.escape(rest)}</span>'
    else:
        body = f'<span leaf="">{body}</span>'
    return f'<p style="{_P_STYLE}"><span style="{_SPAN_STYLE}">{body}</span></p>'


def _img(url: str, ratio: str = "0.5625") -> str:
    return (
        f'<img data-src="{_attr(url)}" class="rich_pages wxw-img" data-ratio="{ratio}" data-s="300,640" '
        f'data-type="jpeg" data-w="1080" style="width: 100%;height: auto !important;" />'
    )


_TEXT_OPEN = '<section style="margin: 0px 8px;">'
_CREDIT_STYLE = "font-size: 14px;color: rgb(136, 136, 136);"


def _credit(text: str, align: str = "right") -> str:
    """A small grey line: 来源, 供稿, 撰稿, 文/图 credits and the editing tail."""
    return f'<p style="text-align: {align};{_CREDIT_STYLE}"><span leaf="">{html.escape(text)}</span></p>'


def article_body(item: WechatItem) -> str:
    """The #js_content soup: banner, (editor's note), (credit lines), byline, paragraphs, (closing
    byline or 作者系 note), (credit lines), 来源 and the editing tail — each as the story says."""
    s = item.story
    parts = [
        '<section style="text-align: center;margin-bottom: 16px;" nodeleaf="">'
        + _img(image_url(f"banner:{COLUMN}"), "0.3")
        + "</section>"
    ]
    if s.editor_note:
        parts.append(
            '<section style="padding: 12px 14px;background-color: rgb(245, 247, 250);border-left: 4px solid '
            'rgb(178, 34, 34);margin-bottom: 20px;"><p style="font-size: 14px;color: rgb(102, 102, 102);'
            f'line-height: 1.75em;"><span leaf="">{html.escape(s.editor_note)}</span></p></section>'
        )
    parts.extend(_credit(line, "left") for line in s.head)
    top = s.byline.top() if s.byline else None
    if top:
        parts.append(
            '<section style="margin-bottom: 24px;"><p style="text-align: center;"><span style="font-size: 15px;'
            'color: rgb(89, 89, 89);letter-spacing: 1px;"><strong><span leaf="">'
            f"{html.escape(top)}</span></strong></span></p></section>"
        )
    parts.append(_TEXT_OPEN)
    parts.extend(_paragraph(p) for p in s.paragraphs)
    parts.append("</section>")
    end = s.byline.end() if s.byline else None
    if end:
        align = "right" if end.startswith("——") else "left"
        parts.append(f'<p style="text-align: {align};{_SPAN_STYLE}"><span leaf="">{html.escape(end)}</span></p>')
    parts.extend(_credit(line) for line in s.tail)
    if s.source_footer:
        parts.append(_credit(f"来源：{unit_name(s.unit)}"))
    parts.append(_credit(s.editing_line()))
    return "\n".join(parts)


def add_paragraph(page: str, text: str) -> str:
    """An article page with one more paragraph closing its text (an edit at the source)."""
    start = page.find(_TEXT_OPEN)
    if start < 0:
        raise ValueError("not an ordinary article page: no article text to add to")
    end = page.index("</section>", start)
    return page[:end] + _paragraph(text) + "\n" + page[end:]


def _album_info_list(base: str, size: int) -> str:
    link = album_link_html(base)
    return f"""[
        {{
            title: '{_js_single(COLUMN)}',
            size: '{size}' * 1,
            link: '{link}',
            type: '0' * 1,
            albumId: '{ALBUM_ID}',
            tagId: '' * 1,
            tagSource: '',
            id: '{link}' ? (('{link}'.match(/[0-9]{{8,}}/) || [])[0] || '') : '',
            continousReadOn: '1' * 1
        }},
    ]"""


def render_article(item: WechatItem, base: str, album_size: int) -> str:
    if item.show_type in (8, 10):
        return _render_share(item, base, album_size)
    s = item.story
    title = s.full_title
    desc = s.paragraphs[0][:54]
    author = s.author_field
    link = _attr(item.page_link(base))
    cover = cover_url(item)
    return f"""<!DOCTYPE html>
<html class="">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<meta http-equiv="X-UA-Compatible" content="IE=edge">
<meta name="viewport" content="width=device-width,initial-scale=1.0,maximum-scale=1.0,user-scalable=0,viewport-fit=cover">
<meta name="description" content="{_attr(desc)}" />
<meta name="author" content="{_attr(author)}" />
<meta property="og:title" content="{_attr(title)}" />
<meta property="og:url" content="{link}" />
<meta property="og:image" content="{cover}" />
<meta property="og:description" content="{_attr(desc)}" />
<meta property="og:site_name" content="微信公众平台" />
<meta property="og:type" content="article" />
<meta property="og:article:author" content="{_attr(ACCOUNT_NAME)}" />
<meta property="twitter:card" content="summary" />
<title>{html.escape(title)}</title>
<script type="text/javascript" nonce="518203476">
    var biz = "{BIZ}" || "";
    var sn = "{item.sn}" || "" || "";
    var mid = "{item.msgid}" || "" || "";
    var idx = "{item.itemidx}" || "" || "";
    window.__allowLoadResFromMp = true;
</script>
</head>
<body id="activity-detail" class="zh_CN wx_wap_page wx_wap_desktop_fontsize_2 mm_appmsg comment_feature discuss_tab appmsg_skin_default appmsg_style_default">
<div id="js_article" class="rich_media">
  <div id="js_top_ad_area" class="top_banner"></div>
  <div class="rich_media_inner">
    <div id="page-content" class="rich_media_area_primary">
      <div class="rich_media_area_primary_inner">
        <div id="img-content" class="rich_media_wrp">
                    <h1 class="rich_media_title " id="activity-name">
                        {html.escape(title)}</h1>
                    <div id="meta_content" class="rich_media_meta_list">
                        <span class="rich_media_meta rich_media_meta_text">
                            <span role="link" tabindex="0" id="js_author_name" class="wx_tap_link js_wx_tap_highlight rich_media_meta_link">{html.escape(author)}</span>
                        </span>
                        <span class="rich_media_meta rich_media_meta_nickname" id="profileBt">
              <a href="javascript:void(0);" class="wx_tap_link js_wx_tap_highlight weui-wa-hotarea" id="js_name">
                {html.escape(ACCOUNT_NAME)}              </a>
              <div id="js_profile_card"></div>
            </span>
                        <span id="meta_content_hide_info" class="">
              <em id="publish_time" class="rich_media_meta rich_media_meta_text"></em>
              <em id="js_ip_wording_wrp" class="rich_media_meta rich_media_meta_text" style="display: none;"><span id="js_ip_wording"></span></em>
            </span>
                    </div>
                    <div class="rich_media_content js_underline_content
                       autoTypeSetting24psection
            " id="js_content" style="visibility: hidden; opacity: 0; ">
{article_body(item)}
                    </div>
        </div>
      </div>
    </div>
  </div>
</div>
<script type="text/javascript" nonce="518203476" reportloaderror>
    function htmlDecode(str) {{
        return str
            .replace(/&#39;/g, '\\'')
            .replace(/<br\\s*(\\/)?\\s*>/g, '\\n')
            .replace(/&nbsp;/g, ' ')
            .replace(/&lt;/g, '<')
            .replace(/&gt;/g, '>')
            .replace(/&quot;/g, '"')
            .replace(/&amp;/g, '&');
    }}

    var uin = '';
    var key = '';
    var pass_ticket = '';
    var new_appmsg = 1;
    var item_show_type = "0";
    var real_item_show_type = "0";
    var appuin = "" || "{BIZ}";
    var create_time = "{item.ct}" * 1;
    var scene = 75;
    var itemidx = "" || "";
    var _copyright_stat = "0";
    var nickname = htmlDecode("{_js_double(html.escape(ACCOUNT_NAME))}");
    var appmsg_type = "9";
    var ct = "{item.ct}";
    var user_name = "{ACCOUNT_ID}";
    var round_head_img = "http://mmbiz.qpic.cn/mmbiz_png/{_hex("head", 54)}/0?wx_fmt=png";
    var msg_title = '{_js_single(title)}'.html(false);
    var msg_desc = htmlDecode("{_js_double(html.escape(desc))}");
    var msg_cdn_url = "{cover}";
    var cdn_url_1_1 = "{cover_url(item, "300")}";
    var msg_link = "{link}";
    var user_uin = "" * 1;
    var msg_source_url = '';
    var img_format = 'jpeg';
    var appmsgid = "{item.msgid}" || '' || '';
    var comment_id = '{item.msgid * 7 % 10**18}' || '0';
    var msg_daily_idx = "1" || "";
    var author = "{_js_double(author)}";
    var copyright_stat = "0" * 1;
    var album_info_list = {_album_info_list(base, album_size)};
    var target_album_info = (function () {{
        return album_info_list && album_info_list[0];
    }})();
</script>
</body>
</html>
"""


def _render_share(item: WechatItem, base: str, album_size: int) -> str:
    s = item.story
    text = "\n\n".join(s.paragraphs)
    published = datetime.fromtimestamp(item.ct, SHANGHAI)
    pictures = ""
    if item.show_type == 8:
        pictures = ",\n".join(
            f"""                    {{
                        cdn_url: JsDecode('{_jsdecode(image_url(f"share:{item.msgid}:{n}"))}'),
                        width: '1080' * 1,
                        height: '1440' * 1,
                        theme_color: JsDecode('rgb(255,255,255)'),
                        is_qr_code: '0' * 1,
                    }}"""
            for n in range(1, 5)
        )
    return f"""<!DOCTYPE html>
<html class="">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1.0,maximum-scale=1.0,user-scalable=0,viewport-fit=cover">
<meta name="description" content="{_attr(s.paragraphs[0][:54])}" />
<meta property="og:title" content="{_attr(s.full_title)}" />
<meta property="og:site_name" content="微信公众平台" />
<title>{html.escape(s.full_title)}</title>
</head>
<body id="activity-detail" class="zh_CN wx_wap_page page_share_img">
<div id="js_article" class="share_content_page">
  <div id="js_image_content" class="share_media"></div>
  <div class="share_notice" id="js_share_notice"></div>
</div>
<script type="text/javascript" nonce="264901735">
    window.item_show_type = '{item.show_type}' || '';
    window.real_item_show_type = '{item.show_type}' || '';
    window.album_info_list = {_album_info_list(base, album_size)};
</script>
<script type="text/javascript" nonce="264901735">
            window.cgiDataNew = {{
                base_resp: {{
                    ret: '0' * 1,
                    errmsg: JsDecode('ok'),
                    wxtoken: '777' * 1,
                }},
                user_name: JsDecode('{ACCOUNT_ID}'),
                nick_name: JsDecode('{_jsdecode(ACCOUNT_NAME)}'),
                title: JsDecode('{_jsdecode(s.full_title)}'),
                desc: JsDecode('{_jsdecode(text)}'),
                content_noencode: JsDecode('{_jsdecode(text)}'),
                create_time: JsDecode('{published:%Y-%m-%d %H:%M}'),
                cdn_url: JsDecode('{_jsdecode(cover_url(item)) if item.show_type == 8 else ""}'),
                link: JsDecode('{_jsdecode(item.page_link(base))}'),
                source_url: JsDecode(''),
                author: JsDecode(''),
                ori_create_time: '{item.ct}' * 1,
                total_item_num: '1' * 1,
                bizuin: JsDecode('{BIZ}'),
                mid: '{item.msgid}' * 1,
                idx: '{item.itemidx}' * 1,
                sn: JsDecode('{item.sn}'),
                is_login: '0' * 1,
                item_show_type: '{item.show_type}' * 1,
                picture_page_info_list: [
{pictures}
                ],
            }};
</script>
</body>
</html>
"""


def _weui_msg(title: str, extra: str = "") -> str:
    return f"""<!DOCTYPE html>
<html>
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1.0,maximum-scale=1.0,user-scalable=0">
<title></title>
</head>
<body class="zh_CN">
<div class="weui-msg">
    <div class="weui-msg__icon-area"><i class="weui-icon-warn weui-icon_msg"></i></div>
    <div class="weui-msg__text-area">
        <div class="weui-msg__title warn">{html.escape(title)}</div>
        {extra}
    </div>
    <div class="weui-msg__extra-area"><div class="weui-footer"><p class="weui-footer__text">微信公众平台</p></div></div>
</div>
</body>
</html>
"""


def render_deleted() -> str:
    return _weui_msg("该内容已被发布者删除")


def render_verification() -> str:
    """WeChat's anti-crawl page (环境异常), as it answers both the album and article URLs."""
    return _weui_msg(
        "环境异常",
        '<p class="weui-msg__desc">当前环境异常，完成验证后即可继续访问。</p>'
        '<a class="weui-btn weui-btn_primary" href="javascript:;" id="js_verify">去验证</a>',
    )


def render_not_found() -> str:
    return _weui_msg("参数错误", '<p class="weui-msg__desc">请检查链接是否完整</p>')
